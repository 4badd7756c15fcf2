"""Convert TN3K (thyroid nodules, Gong et al. 2021) to a hermes_mm
annotation file, and optionally write a split that keeps TN3K's official
test set.

Expected layout (as distributed by the TN3K authors)::

    TN3K/
      trainval-image/0000.jpg ...   trainval-mask/0000.jpg ...
      test-image/0000.jpg ...       test-mask/0000.jpg ...
      label4trainval.csv            label4test.csv      (lines: name,label)

``label`` is 0 (benign) or 1 (malignant); ``name`` may carry the extension
or not. Usage::

    python tools/dataset_converters/tn3k.py data/TN3K \
        --out data/TN3K/tn3k.jsonl \
        [--split-out data/TN3K/splits/split_0.125_seed0.json \
         --labeled-ratio 0.125 --seed 0]

The annotation file lists every image with its mask and label; the split
(optional) takes val from trainval (``--val-ratio``), labelled/unlabelled
from the rest of trainval (stratified, seeded, as ``tools/make_split.py``)
and test = TN3K's official test images. Nothing under the data root is
written except ``--out``/``--split-out`` if they point there.
"""
import argparse
import csv
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Tuple

from hermes_mm.datasets.splits import make_split, save_split

CLASSES = ('benign', 'malignant')
PARTS = (('trainval', 'label4trainval.csv'), ('test', 'label4test.csv'))
IMG_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def read_labels(path: str) -> Dict[str, int]:
    """``{image stem: label}`` from a TN3K label CSV (header optional)."""
    labels = {}
    with open(path, newline='') as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not ''.join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f'{path}:{line_no}: expected "name,label", '
                                 f'got {row!r}')
            name, value = row[0].strip(), row[1].strip()
            if not value.lstrip('-').isdigit():
                if line_no == 1:
                    continue  # header
                raise ValueError(f'{path}:{line_no}: label must be 0 or 1, '
                                 f'got {value!r}')
            label = int(value)
            if label not in range(len(CLASSES)):
                raise ValueError(f'{path}:{line_no}: label must be 0 (benign) '
                                 f'or 1 (malignant), got {label}')
            labels[osp.splitext(name)[0]] = label
    return labels


def collect(root: str, part: str, csv_name: str) -> List[dict]:
    """Annotation records of one TN3K part, sorted by file name."""
    img_dir, mask_dir = f'{part}-image', f'{part}-mask'
    for folder in (img_dir, mask_dir):
        if not osp.isdir(osp.join(root, folder)):
            raise FileNotFoundError(
                f'{osp.join(root, folder)} not found: expected the TN3K '
                f'layout ({img_dir}/, {mask_dir}/, {csv_name})')
    csv_path = osp.join(root, csv_name)
    if not osp.isfile(csv_path):
        raise FileNotFoundError(f'{csv_path} not found (TN3K labels)')
    labels = read_labels(csv_path)
    records = []
    for name in sorted(os.listdir(osp.join(root, img_dir))):
        stem, suffix = osp.splitext(name)
        if suffix.lower() not in IMG_SUFFIXES:
            continue
        mask = osp.join(mask_dir, name)
        if not osp.isfile(osp.join(root, mask)):
            raise FileNotFoundError(
                f'mask {osp.join(root, mask)} for image {name} not found')
        if stem not in labels:
            raise ValueError(f'{name} has no label in {csv_path}')
        records.append(
            dict(
                img=f'{img_dir}/{name}',
                masks=[f'{mask_dir}/{name}'],
                label=CLASSES[labels[stem]]))
    if not records:
        raise ValueError(f'no image found in {osp.join(root, img_dir)}')
    return records


def official_split(records: Dict[str, List[dict]], labeled_ratio: float,
                   val_ratio: float, seed: int) -> Dict[str, List[str]]:
    """labelled/unlabelled/val from trainval, test = the official test."""
    items: List[Tuple[str, int]] = [(r['img'], CLASSES.index(r['label']))
                                    for r in records['trainval']]
    split = make_split(
        items,
        labeled_ratio,
        seed,
        ratios=(1 - val_ratio, val_ratio, 0.0),
        num_classes=len(CLASSES))
    split['test'] = sorted(r['img'] for r in records['test'])
    return split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='TN3K -> hermes_mm annotation file (+ optional split)')
    parser.add_argument('data_root', help='the TN3K folder')
    parser.add_argument('--out', required=True, help='annotation JSONL')
    parser.add_argument('--split-out', help='also write a split JSON')
    parser.add_argument('--labeled-ratio', type=float, default=0.125)
    parser.add_argument('--val-ratio', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    records = {part: collect(args.data_root, part, csv_name)
               for part, csv_name in PARTS}
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        for part, _ in PARTS:
            for record in records[part]:
                f.write(json.dumps(record) + '\n')
    print(f'Wrote {args.out}: ' + ', '.join(
        f'{part} {len(records[part])}' for part, _ in PARTS))
    if args.split_out:
        split = official_split(records, args.labeled_ratio, args.val_ratio,
                               args.seed)
        save_split(split, args.split_out)
        print(f'Wrote {args.split_out}: ' +
              ', '.join(f'{k} {len(v)}' for k, v in split.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
