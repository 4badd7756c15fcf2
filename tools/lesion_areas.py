"""Lesion sizes of a config's labelled training images, for choosing
``test_cfg.min_lesion_area`` (small predicted components -> background).

Examples::

    python tools/lesion_areas.py configs/hermes_busi.py \\
        --data-root data/BUSI --split-file split.json

Prints the number of labelled lesions, the smallest, the 5th percentile and
the median area as a fraction of the image, and the ``--cfg-options`` that
sets the smallest as ``min_lesion_area`` for tools/test.py or train.py.
"""
import argparse
import json
import math
import sys

from mmengine.config import DictAction
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (registers the datasets)
from hermes_mm.datasets.lesion_areas import (labelled_lesion_areas,
                                             lesion_area_summary)
from hermes_mm.utils.config_utils import load_config, rewrite_datasets


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Lesion areas of the labelled training images')
    p.add_argument('config')
    p.add_argument('--data-root', help='as in tools/train.py')
    p.add_argument('--split-file', help='as in tools/train.py')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='as in tools/train.py')
    p.add_argument('--json', action='store_true',
                   help='print the summary as JSON only')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    rewrite_datasets(cfg, data_root=args.data_root,
                     split_file=args.split_file)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    try:
        summary = lesion_area_summary(labelled_lesion_areas(cfg))
    except ValueError as err:
        raise SystemExit(f'{args.config}: {err}')
    prefix = 'model.segmentor' if 'segmentor' in cfg.model else 'model'
    # rounded down, so the smallest labelled lesion would be kept
    min_area = math.floor(summary['min'] * 1e4) / 1e4
    summary['cfg_option'] = f'{prefix}.test_cfg.min_lesion_area={min_area}'
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f'{summary["labelled_lesions"]} labelled lesions; area / image: '
          f'min {summary["min"]:.4f}, 5th percentile {summary["p5"]:.4f}, '
          f'median {summary["median"]:.4f}\n'
          f'to drop smaller predicted components: --cfg-options '
          f'{summary["cfg_option"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
