"""Write a stratified, seeded labelled/unlabelled/val/test split file.

Examples::

    # raw BUSI layout (benign/, malignant/, normal/)
    python tools/make_split.py data/BUSI --labeled-ratio 0.125 --seed 0 \
        --out data/BUSI/split_1-8_seed0.json

    # a test-only split of a separate folder (every image in "test")
    python tools/make_split.py data/BUSI_external --ratios 0 0 1 \
        --out data/BUSI_external/splits/test_only.json

    # an annotation-file data set (MultiTaskAnnotationDataset)
    python tools/make_split.py data/TN3K --ann-file train.jsonl \
        --cls-classes benign malignant --labeled-ratio 0.25 --out split.json

The JSON has keys ``labeled``, ``unlabeled``, ``val``, ``test``: image
paths relative to DATA_ROOT (see ``hermes_mm.datasets.splits.make_split``
for the rounding rules). Nothing but ``--out`` (and its missing parent
folders) is written.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import hermes_mm  # noqa: F401  (applies the stack compat fixes)
from hermes_mm.datasets.annotation_dataset import read_ann_file
from hermes_mm.datasets.busi_dataset import BUSIDataset
from hermes_mm.datasets.splits import (SPLIT_KEYS, ImageRecord, make_split,
                                       save_split, scan_busi)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Make a stratified semi-supervised split file.')
    parser.add_argument(
        'data_root', metavar='DATA_ROOT', help='data set folder')
    parser.add_argument(
        '--labeled-ratio',
        type=float,
        help='fraction of each class\'s train images that keep labels, '
        'in (0, 1]; required unless the train ratio is 0')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument(
        '--out', required=True,
        help='split JSON to write (missing folders are created)')
    parser.add_argument(
        '--ratios',
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=('TRAIN', 'VAL', 'TEST'),
        help='train/val/test fractions (default: 0.7 0.1 0.2); 0 0 1 puts '
        'every image in "test" (testing on a separate folder)')
    parser.add_argument(
        '--ann-file',
        help='JSON-lines annotation file (relative to DATA_ROOT unless '
        'absolute) instead of the raw BUSI folder layout; needs '
        '--cls-classes')
    parser.add_argument(
        '--cls-classes',
        nargs='+',
        help='class names in index order (default for the BUSI layout: '
        f'{" ".join(BUSIDataset.METAINFO["cls_classes"])})')
    args = parser.parse_args(argv)
    if args.labeled_ratio is None:
        if args.ratios[0] > 0:
            ratios = ' '.join(map(str, args.ratios))
            parser.error('--labeled-ratio is required when the train ratio '
                         f'is not 0 (--ratios {ratios})')
        args.labeled_ratio = 1.0  # no train image: nothing to label
    if args.ann_file and not args.cls_classes:
        parser.error('--ann-file needs --cls-classes (the class names the '
                     'labels refer to).')
    return args


def count_table(split: dict, records: Sequence[ImageRecord],
                cls_classes: Sequence[str]) -> str:
    """Per-class image counts per subset, as a text table."""
    label_of = {r.img_rel: r.gt_label for r in records}
    width = max(len(c) for c in list(cls_classes) + ['total'])
    lines = [f'{"class":<{width}} ' + ' '.join(f'{k:>9}' for k in SPLIT_KEYS)]
    rows: List[List[int]] = [[
        sum(label_of[p] == i for p in split[k]) for k in SPLIT_KEYS
    ] for i in range(len(cls_classes))]
    totals = [sum(col) for col in zip(*rows)]
    for name, row in list(zip(cls_classes, rows)) + [('total', totals)]:
        lines.append(f'{name:<{width}} ' + ' '.join(f'{n:>9}' for n in row))
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Scan the data set, split it, write ``--out``, print the counts."""
    args = parse_args(argv)
    if args.ann_file:
        cls_classes = list(args.cls_classes)
        ann_file = args.ann_file if osp.isabs(args.ann_file) else osp.join(
            args.data_root, args.ann_file)
        records = read_ann_file(ann_file, args.data_root, cls_classes)
    else:
        cls_classes = list(args.cls_classes
                           or BUSIDataset.METAINFO['cls_classes'])
        records = scan_busi(args.data_root, cls_classes)
    split = make_split([(r.img_rel, r.gt_label) for r in records],
                       labeled_ratio=args.labeled_ratio,
                       seed=args.seed,
                       ratios=args.ratios,
                       num_classes=len(cls_classes))
    save_split(split, args.out)
    print(count_table(split, records, cls_classes))
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    sys.exit(main())
