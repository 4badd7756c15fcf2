"""Write a synthetic breast-ultrasound data set in the raw BUSI layout.

Examples::

    python tools/make_synthetic_busi.py data/synthetic_busi --num 200 --seed 0
    python tools/make_synthetic_busi.py data/synthetic_busi --num 60 \
        --size 128 160 --overwrite

The folder gets ``benign/``, ``malignant/`` and ``normal/`` with images
``<class> (k).png`` and masks ``<class> (k)_mask.png`` (sometimes also
``_mask_1.png``), exactly like BUSI; see ``hermes_mm.datasets.synthetic``
for how images are made. Same arguments, same bytes. OUT must be empty or
absent; ``--overwrite`` replaces its class folders (other files, e.g. an
old split JSON, are left alone and may then be stale).
"""
import argparse
import sys
from typing import Optional, Sequence

import hermes_mm  # noqa: F401  (applies the stack compat fixes)
from hermes_mm.datasets.synthetic import (BUSI_CLASS_RATIO, CLASS_NAMES,
                                          HELDOUT_STYLE, STYLES,
                                          generate_synthetic_busi)

DEFAULT_NUM = 60


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Make a synthetic data set in the raw BUSI layout.')
    parser.add_argument('out', metavar='OUT', help='output folder')
    parser.add_argument(
        '--num', type=int, default=DEFAULT_NUM,
        help=f'number of images (default: {DEFAULT_NUM})')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument(
        '--style', default='default', choices=sorted(STYLES),
        help='data style (default: default); see --list-styles')
    parser.add_argument(
        '--list-styles', action='store_true',
        help='print the styles and exit')
    parser.add_argument(
        '--size', type=int, nargs=2, default=None, metavar=('MIN', 'MAX'),
        help='inclusive range of each image side in pixels (default: the '
        "style's, 160 224 for 'default')")
    parser.add_argument(
        '--class-ratio', type=float, nargs=len(CLASS_NAMES),
        default=BUSI_CLASS_RATIO, metavar=tuple(n.upper()
                                                for n in CLASS_NAMES),
        help='class shares (default: BUSI\'s, '
        f'{" ".join(f"{r:.3f}" for r in BUSI_CLASS_RATIO)})')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='write into a non-empty OUT (its class folders are replaced)')
    if argv is None:
        argv = sys.argv[1:]
    if '--list-styles' in argv:
        for name, style in STYLES.items():
            tag = ' (held-out style)' if name == HELDOUT_STYLE else ''
            print(f'{name:<10} {style.description}{tag}')
        raise SystemExit(0)
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = STYLES[args.style].size_range
    if args.num < 0:
        parser.error(f'--num must be >= 0, got {args.num}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Generate the data set and print per-class counts."""
    args = parse_args(argv)
    try:
        summary = generate_synthetic_busi(
            args.out, num=args.num, seed=args.seed,
            size_range=tuple(args.size), class_ratio=args.class_ratio,
            overwrite=args.overwrite, style=args.style)
    except FileExistsError:
        # the library's message names the Python argument too
        print(f'error: {args.out!r} is not empty; pass --overwrite to '
              'replace its class folders', file=sys.stderr)
        return 1
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for name in CLASS_NAMES:
        print(f'{name:<10} {summary["counts"][name]:>6}')
    print(f'{"total":<10} {summary["num"]:>6}')
    channels = summary['mask_channels']
    print(f'mask files: {summary["num_mask_files"]} '
          f'({summary["num_extra_masks"]} extra _mask_1; '
          f'{channels[1]} 1-channel, {channels[3]} 3-channel, '
          f'{channels[4]} RGBA)')
    print(f'Wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
