"""Predict lesion masks and image classes with a trained hermes_mm model.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out-dir D
        [--device cpu] [--batch-size N] [--predict-on teacher|student]
        [--strict]

INPUT: image files and/or folders (searched recursively; BUSI mask files
``*_mask.png`` / ``*_mask_<k>.png`` are skipped, see ``--exclude``).
Writes one overlay PNG per image (the image with the lesion contour and
"<class> p=0.87") to ``D/<path relative to the inputs' common folder>.png``,
so same-named files from different folders do not overwrite each other,
and ``D/predictions.csv`` with columns ``image, predicted_class,
prob_<class>..., lesion_area, error`` (lesion pixels at the original
size). An image that cannot be loaded (corrupt, truncated, not an image)
is skipped: it gets a row with only ``image`` and ``error``, and is listed
at the end. Exit status 1 when no image could be processed, or with
``--strict`` when any could not; 0 otherwise.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

import hermes_mm  # noqa: F401  (registration)
from hermes_mm.compat import checkpoint_loading
from hermes_mm.apis import DEFAULT_EXCLUDE, HermesInferencer
from hermes_mm.apis.hermes_inferencer import CSV_NAME


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Lesion segmentation + classification inference')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        'inputs', nargs='+', help='image files and/or folders of images')
    parser.add_argument(
        '--out-dir',
        required=True,
        help='folder for the overlays and predictions.csv')
    parser.add_argument(
        '--device', default=None, help="e.g. 'cpu', 'cuda:0' (default: auto)")
    parser.add_argument(
        '--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument(
        '--predict-on',
        choices=['teacher', 'student'],
        help='network of a Hermes model (default: the config\'s predict_on)')
    parser.add_argument(
        '--exclude',
        default=DEFAULT_EXCLUDE,
        help='regex on file names (without extension) skipped when a folder '
        "is scanned; '' keeps every image (default: BUSI mask files)")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config (key=value)')
    parser.add_argument(
        '--strict',
        action='store_true',
        help='exit 1 if any image could not be processed (default: only if '
        'none could)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # explained load errors, weights-only URLs, no executed config text
    checkpoint_loading.install()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    inferencer = HermesInferencer(
        cfg,
        args.checkpoint,
        device=args.device,
        predict_on=args.predict_on,
        exclude=args.exclude or None)
    results = inferencer(
        args.inputs,
        batch_size=args.batch_size,
        out_dir=args.out_dir,
        return_masks=False)
    print(f'{len(results["predictions"])} images -> '
          f'{osp.join(args.out_dir, CSV_NAME)}')
    failures = results['failures']
    if failures:
        print(f'{len(failures)} image(s) could not be processed and were '
              f'skipped (rows with an error in {CSV_NAME}):',
              file=sys.stderr)
        for failure in failures:
            print(f'  {failure["image"]}: {failure["error"]}',
                  file=sys.stderr)
    results['exit_code'] = int(
        bool(failures) and (args.strict or not results['predictions']))
    return results


if __name__ == '__main__':
    code = main()['exit_code']
    if code:
        sys.exit(code)
