"""Distributed training on CPU: tools/dist_train.sh (torchrun, 2 processes,
gloo) trains the tiny Hermes unchanged, SyncBN included; both ranks end with
the same teacher, which is the one in the (single) checkpoint; logs and
checkpoints are written once; a run resumed from its checkpoint ends
bit-identical to the uninterrupted one (each rank's random stream restored).
Also the CPU fallback's config changes and the Slurm scripts' command
lines."""
import hashlib
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.apis import (cpu_distributed_cfg, revert_sync_bn_cfg,
                            setup_cpu_distributed, shutdown_distributed)
from hermes_mm.datasets.synthetic_busi_dataset import ensure_synthetic_busi
from hermes_mm.engine.hooks.sync_norm_stats_hook import (SyncNormStatsHook,
                                                         norm_running_stats)
from hermes_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')

# A test-only hook: each rank dumps a hash of every teacher tensor.
HASH_HOOK = '''
import hashlib, json, os
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class TeacherHashHook(Hook):
    priority = 'LOWEST'

    def after_train(self, runner):
        model = runner.model
        model = model.module if is_model_wrapper(model) else model
        hashes = {
            key: hashlib.sha256(
                value.detach().cpu().contiguous().numpy().tobytes()
            ).hexdigest()
            for key, value in model.teacher.state_dict().items()
        }
        path = os.path.join(runner.work_dir, f'teacher_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(dict(world_size=get_world_size(), hashes=hashes), f)
'''
# Test speed only: no yapf formatting of config text in the subprocesses.
SITECUSTOMIZE = ('import mmengine.config.config as _config\n'
                 '_config.FormatCode = lambda text, **kwargs: (text, False)\n')


def tensor_hash(tensor: torch.Tensor) -> str:
    return hashlib.sha256(
        tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def dist_train(tmp_path, cfg_file, work_dir, data_root, *extra):
    """``tools/dist_train.sh CFG 2`` (gloo, one thread per rank, modules in
    ``tmp_path`` importable); asserts success, returns the output."""
    env = dict(
        os.environ,
        PYTHONPATH=str(tmp_path),
        PORT=str(free_port()),
        OMP_NUM_THREADS='1')
    proc = subprocess.run([
        'bash',
        osp.join(REPO, 'tools', 'dist_train.sh'),
        str(cfg_file), '2', '--work-dir',
        str(work_dir), '--data-root', data_root, *extra
    ],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=400)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:  # keep the failing rank's own error in view
        with open(tmp_path / 'dist_train_failure.log', 'w') as f:
            f.write(output)
    assert proc.returncode == 0, output[-12000:]
    return output


def test_dist_train_two_cpu_processes(tmp_path):
    data_root = ensure_synthetic_busi(str(tmp_path / 'data'), num=24, seed=0)
    (tmp_path / 'teacher_hash_hook.py').write_text(HASH_HOOK)
    (tmp_path / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    cfg_file = tmp_path / 'tiny_hermes_dist.py'
    cfg_file.write_text(
        textwrap.dedent(f'''\
        _base_ = [{TINY_HERMES!r}]
        custom_imports = dict(
            imports=['hermes_mm', 'teacher_hash_hook'],
            allow_failed_imports=False)
        custom_hooks = [
            dict(type='TeacherThresholdUpdateHook'),
            dict(type='TeacherHashHook'),
        ]
        val_dataloader = None
        val_evaluator = None
        val_cfg = None
        '''))
    work_dir = tmp_path / 'work'
    output = dist_train(tmp_path, cfg_file, work_dir, data_root)
    # SyncBN (the config's norm) ran as BN + statistics sync, with a warning.
    assert 'converted to BN for this CPU (gloo) run' in output

    ranks = [
        json.loads((work_dir / f'teacher_rank{r}.json').read_text())
        for r in (0, 1)
    ]
    assert [r['world_size'] for r in ranks] == [2, 2]
    rank0, rank1 = ranks[0]['hashes'], ranks[1]['hashes']
    assert rank0.keys() == rank1.keys()
    differ = [k for k in rank0 if rank0[k] != rank1[k]]
    assert not differ, f'teacher differs across ranks: {differ[:5]}'
    assert any('running_var' in k for k in rank0)  # BN statistics checked

    checkpoints = sorted(p.name for p in work_dir.rglob('*.pth'))
    assert checkpoints == ['iter_2.pth']
    state = torch.load(
        work_dir / 'iter_2.pth', map_location='cpu',
        weights_only=False)['state_dict']
    saved = {
        key[len('teacher.'):]: tensor_hash(value)
        for key, value in state.items() if key.startswith('teacher.')
    }
    assert saved == rank0
    logs = list(work_dir.rglob('*.log'))
    assert len(logs) == 1
    # the workers skip interpreter finalization: nothing logged is lost
    assert 'Iter(train) [2/2]' in logs[0].read_text()
    assert len(list(work_dir.rglob('scalars.json'))) == 1


# Per-rank random streams (diff_rank_seed) and checkpoints every 2 of 4
# iterations, deterministic: the resume test's setting.
RESUME_CFG = f'''\
_base_ = [{TINY_HERMES!r}]
custom_imports = dict(imports=['hermes_mm'], allow_failed_imports=False)
randomness = dict(seed=0, deterministic=True, diff_rank_seed=True)
train_cfg = dict(max_iters=4)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1))
val_dataloader = None
val_evaluator = None
val_cfg = None
'''


def test_dist_resume_restores_every_ranks_random_stream(tmp_path):
    """2-process gloo run, 4 iterations, against the same run resumed from
    its iteration-2 checkpoint: bit-identical final weights only if each
    rank gets its own torch generator back (RandomStateHook), since the
    ranks draw different CutMix boxes and contrastive anchors."""
    data_root = ensure_synthetic_busi(str(tmp_path / 'data'), num=24, seed=0)
    (tmp_path / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    cfg_file = tmp_path / 'tiny_hermes_resume.py'
    cfg_file.write_text(RESUME_CFG)
    ref = tmp_path / 'ref'
    dist_train(tmp_path, cfg_file, ref, data_root)
    saved = torch.load(ref / 'iter_2.pth', map_location='cpu',
                       weights_only=True)['hermes_random_state']['ranks']
    assert len(saved) == 2
    assert not torch.equal(saved[0]['torch'], saved[1]['torch'])

    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    shutil.copy(ref / 'iter_2.pth', resumed / 'iter_2.pth')
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_2.pth'))
    output = dist_train(tmp_path, cfg_file, resumed, data_root, '--resume')
    assert 'Auto resumed from the latest checkpoint' in output

    final = [
        torch.load(d / 'iter_4.pth', map_location='cpu', weights_only=True)
        for d in (ref, resumed)
    ]
    a, b = (f['state_dict'] for f in final)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'resumed run differs: {differ[:5]}'
    for x, y in zip(final[0]['optimizer']['state'].values(),
                    final[1]['optimizer']['state'].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_cpu_fallback_config():
    cfg = Config.fromfile(TINY_HERMES)
    cfg.launcher = 'pytorch'
    assert revert_sync_bn_cfg(Config.fromfile(TINY_HERMES).model) > 0
    assert cpu_distributed_cfg(cfg)
    assert revert_sync_bn_cfg(cfg.model) == 0  # nothing left to revert
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert hooks.count('SyncNormStatsHook') == 1
    assert cpu_distributed_cfg(cfg)  # idempotent
    assert [h['type'] for h in cfg.custom_hooks] == hooks
    # Nothing changes with CUDA or without a launcher.
    for launcher, cuda in (('pytorch', True), ('none', False)):
        untouched = Config.fromfile(TINY_HERMES)
        untouched.launcher = launcher
        before = untouched.to_dict()
        assert not setup_cpu_distributed(untouched, cuda_available=cuda)
        assert untouched.to_dict() == before
    slurm = Config.fromfile(TINY_HERMES)
    slurm.launcher = 'slurm'
    with pytest.raises(ValueError, match='--launcher pytorch'):
        setup_cpu_distributed(slurm, cuda_available=False)


def test_norm_stats_hook_touches_only_batchnorm():
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY_HERMES)
    revert_sync_bn_cfg(cfg.model)
    model = MODELS.build(cfg.model)
    stats = norm_running_stats(model)
    bn = [
        m for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert len(stats) == 2 * len(bn) > 0
    ids = {id(t) for t in stats}
    # Hermes' per-rank queues/prototypes must never be averaged.
    others = [
        name for name, buf in model.named_buffers()
        if id(buf) in ids and not name.endswith(('running_mean',
                                                 'running_var'))
    ]
    assert not others
    with pytest.raises(ValueError, match='interval'):
        SyncNormStatsHook(interval=0)


@pytest.mark.parametrize('script,args,expected', [
    ('slurm_train.sh', ['gpu', 'hermes', 'cfg.py', '--work-dir', 'w'],
     'tools/train.py cfg.py --launcher=slurm --work-dir w'),
    ('slurm_test.sh', ['gpu', 'hermes', 'cfg.py', 'ckpt.pth', '--show-dir',
                       's'],
     'tools/test.py cfg.py ckpt.pth --launcher=slurm --show-dir s'),
])
def test_slurm_scripts(tmp_path, script, args, expected):
    """With a fake ``srun``: the command line MMSeg's scripts produce."""
    record = tmp_path / 'srun_args'
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\necho "$@" > {record}\n')
    fake.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f'{fake.parent}:{os.environ["PATH"]}',
        GPUS='16',
        GPUS_PER_NODE='8')
    subprocess.run(['bash', osp.join(REPO, 'tools', script)] + args,
                   env=env,
                   check=True,
                   capture_output=True)
    line = record.read_text().split()
    assert line[:4] == ['-p', 'gpu', '--job-name=hermes', '--gres=gpu:8']
    assert '--ntasks=16' in line and '--ntasks-per-node=8' in line
    command = ' '.join(line[line.index('-u') + 1:])
    assert command == osp.join(REPO, expected)


def test_shutdown_distributed_destroys_the_group_once(tmp_path):
    """One-process gloo group: destroyed, then a no-op (tools/train.py and
    tools/test.py call it, through end_distributed_worker, after the
    runner, also without a launcher)."""
    import torch.distributed as dist
    assert not shutdown_distributed()  # no group: nothing to do
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
        world_size=1)
    assert dist.is_initialized()
    assert shutdown_distributed()
    assert not dist.is_initialized()
    assert not shutdown_distributed()
