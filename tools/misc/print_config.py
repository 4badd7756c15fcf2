"""Print a hermes_mm config as MMEngine resolves it (bases merged, CLI
options applied), without building anything.

    python tools/misc/print_config.py CONFIG [--data-root DIR]
        [--split-file FILE] [--cfg-options k=v ...] [--out FILE.py]

MMSegmentation's ``tools/misc/print_config.py`` imports ``mmseg.models``
before ``hermes_mm`` and fails on a CPU install with mmcv-lite (``No module
named 'mmcv._ext'``); this one imports ``hermes_mm`` first. Costs about 3 s
(imports and yapf formatting).
"""
import argparse
import sys
from typing import Optional, Sequence

import hermes_mm  # noqa: F401  (compat fixes first)
from mmengine.config import DictAction

from hermes_mm.utils import config_with_overrides


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--data-root', help='as tools/train.py --data-root')
    parser.add_argument('--split-file', help='as tools/train.py --split-file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings, key=value (as tools/train.py)')
    parser.add_argument('--out', help='also write the config to this .py')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Print (and optionally write) the resolved config; return its text."""
    args = parse_args(argv)
    cfg = config_with_overrides(args.config, args.cfg_options,
                                args.data_root, args.split_file)
    text = cfg.pretty_text
    print(f'Config:\n{text}')
    if args.out:
        cfg.dump(args.out)
        print(f'Wrote {args.out}')
    return text


if __name__ == '__main__':
    main()
    sys.exit(0)
