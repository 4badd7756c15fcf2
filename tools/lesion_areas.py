"""Lesion sizes of a config's labelled training images, for choosing
``test_cfg.min_lesion_area`` (small predicted components -> background).

Examples::

    python tools/lesion_areas.py configs/hermes_busi.py \\
        --data-root data/BUSI --split-file split.json

Prints the number of labelled lesions, the smallest, the 5th percentile and
the median area as a fraction of the image, and the ``--cfg-options`` that
sets ``--scale`` x the smallest as ``min_lesion_area`` for tools/test.py or
train.py. The default scale 0.5 leaves a margin for lesions smaller than
any labelled one and for a model that predicts a lesion in pieces: on the
600-iteration demo checkpoint, 1 x the smallest cut the test Dice from 79.1
to 64.9 while 0.5 x gave 79.6 (README "Train and test"). When the data has a
lesion-free class (BUSI: normal), it also prints the
``test_cfg.lesion_classes`` option that lets the filtered mask decide lesion
vs lesion-free (:func:`hermes_mm.models.utils.mask_decides_lesion`).
"""
import argparse
import json
import math
import sys

from mmengine.config import DictAction
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (registers the datasets)
from hermes_mm.datasets.lesion_areas import (labelled_lesion_areas,
                                             lesion_area_summary,
                                             lesion_class_indices)
from hermes_mm.models.segmentors import MultiTaskSegmentor
from hermes_mm.models.utils import test_cfg_key
from hermes_mm.registry import MODELS
from hermes_mm.utils.config_utils import load_config, rewrite_datasets


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Lesion areas of the labelled training images')
    p.add_argument('config')
    p.add_argument('--data-root', help='as in tools/train.py')
    p.add_argument('--split-file', help='as in tools/train.py')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='as in tools/train.py')
    p.add_argument('--scale', type=float, default=0.5,
                   help='min_lesion_area = scale x the smallest labelled '
                   'lesion (default 0.5)')
    p.add_argument('--json', action='store_true',
                   help='print the summary as JSON only')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not 0 < args.scale <= 1:
        raise SystemExit(f'--scale must be in (0, 1], got {args.scale}')
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    rewrite_datasets(cfg, data_root=args.data_root,
                     split_file=args.split_file)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    key = test_cfg_key(cfg.model, 'min_lesion_area')
    seg_type = cfg.model.get('segmentor', cfg.model).get('type')
    seg_cls = MODELS.get(seg_type) if isinstance(seg_type, str) else None
    if seg_cls is None or not issubclass(seg_cls, MultiTaskSegmentor):
        raise SystemExit(
            f'{args.config}: the predicting segmentor is {seg_type!r}; '
            'only a MultiTaskSegmentor (or HermesSegmentor around one) '
            f'reads {key}')
    try:
        summary = lesion_area_summary(labelled_lesion_areas(cfg))
        lesion_classes = lesion_class_indices(cfg)
    except (ValueError, OSError) as err:  # no labelled lesion; bad paths
        raise SystemExit(f'{args.config}: {err}')
    # rounded down (at scale 1 the smallest labelled lesion stays)
    min_area = math.floor(args.scale * summary['min'] * 1e4) / 1e4
    summary['scale'] = args.scale
    summary['cfg_option'] = f'{key}={min_area}'
    summary['lesion_classes_option'] = None if lesion_classes is None else (
        f'{test_cfg_key(cfg.model, "lesion_classes")}='
        f'[{",".join(map(str, lesion_classes))}]')
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f'{summary["labelled_lesions"]} labelled lesions; area / image: '
          f'min {summary["min"]:.4f}, 5th percentile {summary["p5"]:.4f}, '
          f'median {summary["median"]:.4f}\n'
          f'to drop predicted components below {args.scale:g} x the '
          f'smallest: --cfg-options {summary["cfg_option"]}')
    if summary['lesion_classes_option']:
        print('to let that mask decide lesion vs lesion-free (the '
              'classifier picks the class within): add '
              f'{summary["lesion_classes_option"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
