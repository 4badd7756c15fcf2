"""The CPU configs for real BUSI (issue 17, point 5): the demo's small
network on BUSIDataset, and the command in their header trains."""
import glob
import math
import os.path as osp
import time

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAIRS = [('hermes_busi_small.py', 'demo/hermes_synthetic.py',
          'hermes_busi.py'),
         ('supervised_busi_small.py', 'demo/supervised_synthetic.py',
          'supervised_busi.py')]


def load(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


def without_sizes(model):
    """The model config minus the pre-processor input size."""
    model = model.to_dict()
    for holder in (model, model.get('segmentor', {}),
                   model.get('data_preprocessor', {})):
        if isinstance(holder.get('data_preprocessor'), dict):
            holder['data_preprocessor'].pop('size', None)
        holder.pop('size', None) if holder is model.get(
            'data_preprocessor') else None
    return model


def test_small_configs_are_the_demo_network_on_busi():
    for name, demo, busi in PAIRS:
        cfg, demo_cfg, busi_cfg = load(name), load(demo), load(busi)
        assert without_sizes(cfg.model) == without_sizes(demo_cfg.model)
        # no pretrained weights, 256x256 like the BUSI configs' pipelines
        student = cfg.model.get('segmentor', cfg.model)
        assert student.backbone.init_cfg is None
        assert cfg.train_dataloader == busi_cfg.train_dataloader
        assert cfg.test_dataloader == busi_cfg.test_dataloader
        assert cfg.train_cfg.max_iters == 2400
        assert cfg.param_scheduler[-1].end == 2400


def test_header_command_trains(tmp_path, load_script, monkeypatch):
    """``python tools/train.py configs/hermes_busi_small.py --data-root
    data/BUSI --split-file ...`` as the config's header says, 2 iterations
    with 2 + 2 images on a tiny BUSI-layout folder."""
    import torch
    monkeypatch.setenv('LOCAL_RANK', '0')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data, split = str(tmp_path / 'BUSI'), str(tmp_path / 'split.json')
    assert load_script('tools/make_synthetic_busi.py').main(
        [data, '--num', '8', '--seed', '4', '--size', '64', '72']) == 0
    load_script('tools/make_split.py').main(
        [data, '--labeled-ratio', '0.5', '--out', split])
    header = open(osp.join(REPO, 'configs', 'hermes_busi_small.py')).read()
    command = [line for line in header.splitlines()
               if 'tools/train.py configs/hermes_busi_small.py' in line][0]
    argv = command.lstrip('# ').split()[2:]
    argv[0] = osp.join(REPO, argv[0])
    argv[argv.index('--data-root') + 1] = data
    argv[argv.index('--split-file') + 1] = split
    work = str(tmp_path / 'work')
    name = f'busi_small_{time.time_ns()}'
    try:
        load_script('tools/train.py').main(argv + [
            '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
            'train_dataloader.batch_size=4',
            'train_dataloader.sampler.batch_size=4',
            'train_dataloader.sampler.source_ratio=[2,2]',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'default_hooks.logger.interval=1', f'experiment_name={name}',
            f'visualizer.name=vis_{name}'])
    finally:
        torch.set_num_threads(threads)
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    last = [ln for ln in log.splitlines() if 'Iter(train) [2/2]' in ln]
    assert last, log[-2000:]
    loss = float(last[0].split('  loss: ')[1].split()[0])
    assert math.isfinite(loss)


def test_readme_costs_row_matches_the_measured_checkpoint(load_script):
    """README, Costs: the small config's checkpoint sizes as
    benchmarks/checkpoint_sizes.py measures them."""
    sizes = load_script('benchmarks/checkpoint_sizes.py').sizes(
        osp.join(REPO, 'configs', 'hermes_busi_small.py'))
    readme = open(osp.join(REPO, 'README.md')).read()
    row = [ln for ln in readme.splitlines()
           if ln.startswith('| `configs/hermes_busi_small.py` |')][0]
    assert f'{sizes["with_optimizer_bytes"] / 1e6:.0f} MB' in row
    assert f'{sizes["weights_bytes"] / 1e6:.0f} MB' in row
    assert f'{sizes["params"] / 1e6:.1f} M' in row
