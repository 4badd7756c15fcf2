"""Train a hermes_mm model (same flags as MMSegmentation's tools/train.py).

    python tools/train.py CONFIG [--data-root DIR] [--split-file FILE]
        [--work-dir W] [--resume [auto|PATH]] [--amp] [--cfg-options k=v ...]
        [--allow-new-cfg-keys] [--skip-data-check]
        [--launcher none|pytorch|slurm]
"""
import argparse
import contextlib
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import hermes_mm  # noqa: F401  (registration)
from hermes_mm.compat import checkpoint_loading
from hermes_mm.apis import end_distributed_worker, setup_cpu_distributed
from hermes_mm.apis.resume import check_resume_compatible, resolve_resume
from hermes_mm.apis.work_dir_lock import WorkDirLock, is_launcher_rank
from hermes_mm.datasets.dataset_check import raise_for_config_files
from hermes_mm.utils import load_config, rewrite_datasets, set_dist_backend
from hermes_mm.utils.cfg_options import check_built_hooks, check_cfg_options
from hermes_mm.utils.pretrained import (PretrainedWeightsError,
                                        check_pretrained_weights)
from hermes_mm.utils.vis_backends import warn_vis_backends


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a hermes_mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--data-root',
        help='data root for every dataset of the config (labelled, '
        'unlabelled, val, test)')
    parser.add_argument(
        '--split-file',
        help='split JSON from tools/make_split.py for every dataset')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        const=True,
        default=False,
        metavar='auto|PATH',
        help='resume from the work_dir\'s latest checkpoint (an error if '
        'there is none); "auto": resume if there is one, else start from '
        'scratch; PATH: resume from that checkpoint')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs CUDA)')
    parser.add_argument('--seed', type=int, help='random seed')
    parser.add_argument(
        '--deterministic',
        action='store_true',
        help='use deterministic algorithms (bit-reproducible on CPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--allow-new-cfg-keys',
        action='store_true',
        help='accept --cfg-options keys the config does not have and no '
        'component reads (checked before anything is built otherwise)')
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help='do not decode every image and mask of the datasets at '
        'start-up')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_random_state_hook(cfg: Config) -> None:
    """Append ``RandomStateHook`` to ``custom_hooks`` unless present, so
    ``--resume`` continues the model's random stream exactly (see
    ``hermes_mm/engine/hooks/random_state_hook.py``)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    names = [str(h.get('type', '')).split('.')[-1] for h in hooks
             if isinstance(h, dict)]
    if 'RandomStateHook' not in names:
        hooks.append(dict(type='RandomStateHook'))
    cfg.custom_hooks = hooks


def build_cfg(args) -> Config:
    """The config the runner is built from, with the CLI applied."""
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options, args.allow_new_cfg_keys)
        cfg.merge_from_dict(args.cfg_options)
    rewrite_datasets(cfg, data_root=args.data_root,
                     split_file=args.split_file)
    set_dist_backend(cfg, torch.cuda.is_available())
    setup_cpu_distributed(cfg)  # torchrun on CPU: gloo, SyncBN->BN

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU (MMEngine\'s '
                             'AmpOptimWrapper); this machine has none.')
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            if optim_wrapper != 'OptimWrapper':
                raise SystemExit('`--amp` is only supported when the '
                                 'optimizer wrapper type is `OptimWrapper` '
                                 f'but got {optim_wrapper}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.seed is not None or args.deterministic:
        randomness = cfg.setdefault('randomness', dict())
        if args.seed is not None:
            randomness['seed'] = args.seed
        if args.deterministic:
            randomness['deterministic'] = True
    resolve_resume(cfg, args.resume)  # sets cfg.resume (and load_from)
    add_random_state_hook(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # explained load errors, weights-only URLs, no executed config text
    checkpoint_loading.install()
    cfg = build_cfg(args)
    warn_vis_backends(cfg)
    try:  # offline ImageNet weights: one line now, not a traceback later
        check_pretrained_weights(cfg)
    except PretrainedWeightsError as err:
        raise SystemExit(f'error: {err}') from None
    lock = WorkDirLock(cfg.work_dir, args.config)
    with lock if is_launcher_rank() else contextlib.nullcontext():
        if not args.skip_data_check:
            raise_for_config_files(cfg)
        runner = Runner.from_cfg(cfg)
        check_built_hooks(runner)
        if cfg.resume:
            check_resume_compatible(runner, cfg.load_from)
        runner.train()


if __name__ == '__main__':
    main()
    end_distributed_worker()
