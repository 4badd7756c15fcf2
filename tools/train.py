"""Train a hermes_mm model (same flags as MMSegmentation's tools/train.py).

    python tools/train.py CONFIG [--data-root DIR] [--split-file FILE]
        [--work-dir W] [--resume] [--amp] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm]
"""
import argparse
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import hermes_mm  # noqa: F401  (compat fixes + registration)
from hermes_mm.apis import end_distributed_worker, setup_cpu_distributed
from hermes_mm.utils import load_config, rewrite_datasets, set_dist_backend


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
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir '
        'automatically')
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
    cfg.resume = args.resume
    add_random_state_hook(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
    end_distributed_worker()
