"""Check a data set before training: report every problem at once.

Examples::

    # raw BUSI layout (benign/, malignant/, normal/) and a split file
    python tools/check_dataset.py data/BUSI --split-file split.json

    # an annotation-file data set, with a JSON report
    python tools/check_dataset.py data/TN3K --ann-file train.jsonl \\
        --cls-classes benign malignant --json tn3k_report.json

Reports undecodable images/masks, images without masks and masks without
images, mask/image size mismatches, masks with values other than 0/255
(training reads > 127 as lesion), files that are neither images nor masks,
folders that are not classes, exact duplicate images (same pixels) within
a class or across classes, images with an EXIF orientation tag (ignored
for images and masks alike), 16-bit images using less than 1/8 of their
range (12-bit data, scaled by its bit depth), invalid annotation lines,
and split files that name unknown images, list an image twice or miss a
class in ``labeled``.
The problem kinds are listed in
``hermes_mm.datasets.dataset_check.PROBLEM_KINDS``.

Exit status: 0 when no problem was found, 1 otherwise (2: bad arguments).
Nothing under DATA_ROOT is written; ``--json`` must point elsewhere.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Optional, Sequence

from hermes_mm.datasets.dataset_check import (CheckReport, check_ann_file,
                                              check_busi_folder)

BUSI_CLASSES = ('benign', 'malignant', 'normal')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Report every problem of a data set (never writes '
        'into it).')
    parser.add_argument(
        'data_root', metavar='DATA_ROOT', help='data set folder')
    parser.add_argument(
        '--split-file',
        help='split JSON (tools/make_split.py) to check against the data')
    parser.add_argument(
        '--ann-file',
        help='JSON-lines annotation file (relative to DATA_ROOT unless '
        'absolute) instead of the raw BUSI folder layout; needs '
        '--cls-classes')
    parser.add_argument(
        '--cls-classes',
        nargs='+',
        help='class names in index order (default for the BUSI layout: '
        f'{" ".join(BUSI_CLASSES)})')
    parser.add_argument(
        '--json', metavar='OUT', help='also write the report as JSON here')
    args = parser.parse_args(argv)
    if args.ann_file and not args.cls_classes:
        parser.error('--ann-file needs --cls-classes (the class names the '
                     'labels refer to).')
    if args.json and _inside(args.json, args.data_root):
        parser.error(f'--json {args.json} is inside DATA_ROOT; this tool '
                     f'never writes into the data set, choose another path.')
    return args


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or under it (symlinks resolved)."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def format_report(report: CheckReport) -> str:
    """The human-readable report."""
    lines = [f'[{p.kind}] {p.path}: {p.message}' for p in report.problems]
    summary = (f'{report.data_root}: {report.num_images} image(s), '
               f'{report.num_masks} mask file(s), ')
    if report.clean:
        summary += 'no problem found.'
    else:
        counts = ', '.join(f'{k}: {n}' for k, n in report.counts().items())
        summary += f'{len(report.problems)} problem(s) ({counts}).'
    return '\n'.join(lines + [summary])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the data set; print and optionally save the report.

    Returns:
        int: 0 if clean, 1 if any problem was found.
    """
    args = parse_args(argv)
    if args.ann_file:
        ann_file = args.ann_file if osp.isabs(args.ann_file) else osp.join(
            args.data_root, args.ann_file)
        report = check_ann_file(args.data_root, ann_file, args.cls_classes,
                                args.split_file)
    else:
        report = check_busi_folder(args.data_root,
                                   args.cls_classes or BUSI_CLASSES,
                                   args.split_file)
    print(format_report(report))
    if args.json:
        folder = osp.dirname(osp.abspath(args.json))
        os.makedirs(folder, exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report.to_dict(), f, indent=2)
            f.write('\n')
        print(f'Wrote {args.json}')
    return 0 if report.clean else 1


if __name__ == '__main__':
    sys.exit(main())
