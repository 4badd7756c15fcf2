"""Test a hermes_mm checkpoint and write the metrics.

    python tools/test.py CONFIG CHECKPOINT [--data-root DIR]
        [--split-file FILE | --all-images] [--work-dir W]
        [--out-metrics FILE.json] [--show-dir DIR] [--cfg-options k=v ...]
        [--launcher ...]

Test on every image of a separate folder (its own masks, BUSI layout or
the config's annotation file)::

    python tools/test.py configs/hermes_busi.py best.pth \
        --data-root data/BUSI_external --all-images
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.runner import Runner

import hermes_mm  # noqa: F401  (registration)
from hermes_mm.compat import checkpoint_loading
import hermes_mm.engine.hooks.hermes_visualization_hook  # noqa: F401
import hermes_mm.visualization  # noqa: F401  (HermesVisualizer)
from hermes_mm.apis import end_distributed_worker, setup_cpu_distributed
from hermes_mm.utils import (load_config, rewrite_datasets, set_dist_backend,
                             to_jsonable)
from hermes_mm.utils.test_data import is_no_split, use_all_images


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a hermes_mm model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--data-root', help='data root for every dataset')
    parser.add_argument(
        '--split-file',
        help='split JSON for every dataset; "none" = --all-images')
    parser.add_argument(
        '--all-images',
        action='store_true',
        help='test on every image of the data root (no split file): for a '
        'separate folder with its own masks')
    parser.add_argument(
        '--work-dir', help='directory for logs and the metrics JSON')
    parser.add_argument(
        '--out-metrics',
        help='write the test metrics to this JSON file (seg/dice, seg/iou, '
        'seg/hd95, cls/accuracy, cls/f1, cls/auc, ...)')
    parser.add_argument(
        '--show-dir',
        help='write one panel per test image (image | ground truth | '
        'prediction with "class p=..") to DIR/<image path in the data '
        'set>.png')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config (key=value)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg: Config, show_dir: str) -> Config:
    """Draw every test image's panel into ``show_dir``.

    MMSeg's ``SegVisualizationHook`` is upgraded to
    ``HermesVisualizationHook`` (same arguments) and ``SegLocalVisualizer``
    to ``HermesVisualizer``, which write ``show_dir/<img_rel>.png``: one
    file per image, subfolders kept, so equal file names cannot collide.
    """
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks, e.g. '
            "visualization=dict(type='HermesVisualizationHook')")
    hook = default_hooks['visualization']
    hook_type = str(hook.get('type', '')).split('.')[-1]
    if hook_type == 'SegVisualizationHook':
        hook['type'] = 'HermesVisualizationHook'
        hook_type = 'HermesVisualizationHook'
    hook['draw'] = True
    hook['interval'] = 1
    if hook_type == 'HermesVisualizationHook':
        hook['test_out_dir'] = osp.abspath(show_dir)
    else:  # a custom hook: let it save through the visualizer's backends
        cfg.visualizer['save_dir'] = show_dir
    if str(cfg.visualizer.get('type', '')).split('.')[-1] in (
            'SegLocalVisualizer', ''):
        cfg.visualizer['type'] = 'HermesVisualizer'
    return cfg


def build_cfg(args) -> Config:
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    all_images = args.all_images or is_no_split(args.split_file)
    if all_images and args.split_file is not None and not is_no_split(
            args.split_file):
        raise SystemExit('--all-images tests every image of the data root; '
                         'drop --split-file (or pass --split-file none).')
    rewrite_datasets(cfg, data_root=args.data_root,
                     split_file=None if all_images else args.split_file)
    if all_images:
        use_all_images(cfg)
    set_dist_backend(cfg, torch.cuda.is_available())
    setup_cpu_distributed(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        cfg = trigger_visualization_hook(cfg, args.show_dir)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # explained load errors, weights-only URLs, no executed config text
    checkpoint_loading.install()
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out_metrics and is_main_process():
        out_dir = osp.dirname(osp.abspath(args.out_metrics))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.out_metrics, 'w') as f:
            json.dump(to_jsonable(metrics), f, indent=2, sort_keys=True)
    return metrics


if __name__ == '__main__':
    main()
    end_distributed_worker()
