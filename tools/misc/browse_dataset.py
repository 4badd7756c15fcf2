"""Draw what a config's data set feeds the model: image | mask, with the
class, after the whole pipeline (augmentations, crops, views).

    python tools/misc/browse_dataset.py CONFIG [--loader train|val|test]
        [--data-root DIR] [--split-file FILE] [--output-dir DIR]
        [--num N] [--cfg-options k=v ...]

One PNG per sample (per branch for Hermes' labelled / weak / strong views)
goes to ``--output-dir/<image path>[_<branch>].png``: the packed image, its
lesion mask (red; ignored pixels grey) and the class ("unlabelled" for the
unlabelled set). Like MMSegmentation's ``tools/misc/browse_dataset.py``,
which cannot draw the class and does not import on a CPU install.
Costs about 5 s of start-up plus well under a second per sample.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

import hermes_mm  # noqa: F401  (compat fixes first)
import cv2
from mmengine.config import DictAction
from mmengine.registry import init_default_scope

from hermes_mm.registry import DATASETS
from hermes_mm.utils import config_with_overrides
from hermes_mm.visualization.browse import browse_panels

LOADERS = dict(train='train_dataloader', val='val_dataloader',
               test='test_dataloader')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Draw image | mask | class after the pipeline')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--loader', choices=sorted(LOADERS), default='train',
                        help='which dataloader\'s data set (default: train)')
    parser.add_argument('--data-root', help='as tools/train.py --data-root')
    parser.add_argument('--split-file', help='as tools/train.py --split-file')
    parser.add_argument('--output-dir', default='browse_dataset',
                        help='where the PNGs go (default: ./browse_dataset)')
    parser.add_argument('--num', type=int, default=20,
                        help='samples to draw (default: 20; 0 = all)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings, key=value (as tools/train.py)')
    args = parser.parse_args(argv)
    if args.num < 0:
        parser.error(f'--num must be >= 0, got {args.num}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the data set, draw the samples, return how many PNGs."""
    args = parse_args(argv)
    cfg = config_with_overrides(args.config, args.cfg_options,
                                args.data_root, args.split_file)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset = DATASETS.build(cfg[LOADERS[args.loader]]['dataset'])
    meta = dataset.metainfo
    class_names = list(meta.get('cls_classes') or ())
    count = len(dataset) if args.num == 0 else min(args.num, len(dataset))
    written = 0
    for index in range(count):
        packed = dataset[index]
        info = dataset.get_data_info(index)
        stem = osp.splitext(info.get('img_rel') or
                            osp.basename(info['img_path']))[0]
        for branch, panel in browse_panels(packed, class_names):
            out = osp.join(args.output_dir,
                           stem + (f'_{branch}' if branch else '') + '.png')
            os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
            cv2.imwrite(out, panel[..., ::-1])
            written += 1
    print(f'Wrote {written} panels of {count} samples '
          f'({args.loader} set, {len(dataset)} images) to {args.output_dir}')
    return written


if __name__ == '__main__':
    main()
    sys.exit(0)
