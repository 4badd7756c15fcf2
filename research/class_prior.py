"""Is "normal called benign" a class-prior error or a feature error?

Amendment 21 item 2 (``benchmarks/results/PREREGISTRATION_styles.md``): on
``crowded`` and ``speckle`` the labelled-only classifier calls most normal
images benign (``research/image_calibration.py``). If the normal class is
merely under-weighted, shifting the class scores fixes it (distribution
alignment, logit adjustment, a class-balanced loss); if the features do
not separate the classes, no shift does. This probe tells the two apart
offline, on the teacher's class probabilities that
``research/selection_signals.py`` keeps per run (dev set of the run's
style, last checkpoint), with three read-outs per checkpoint:

- ``raw``: argmax of the probabilities;
- ``aligned``: distribution alignment (ReMixMatch) to the dev set's true
  class shares, ``p * share / mean(p)`` renormalised (the label-free
  correction a training run could make, with the labelled shares as
  target);
- ``best_shift``: the best accuracy any per-class shift of the log
  probabilities reaches on the dev set itself (a grid of ``--shift-range``
  in ``--shift-step`` steps for every class but the first): an upper bound
  on every prior correction, fitted on the labels it is scored on.

It reports accuracy and recall per true class (means over seeds) per style
and variant::

    python research/class_prior.py --out-dir benchmarks/runs/styles_1200 \\
        --styles crowded speckle shadowing varied annotated \\
        --variants hermes_unlabelled_off class_balanced_gated \\
        --seeds 0 1 2 --out benchmarks/results/class_prior_1200it.md
"""
import argparse
import itertools
import os.path as osp
import sys
import time
from typing import Callable, Dict, List

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(HERE, '..', 'benchmarks'))
import false_lesions  # noqa: E402
from _common import table  # noqa: E402
from _study import (add_study_args, mean_over_seeds, seed_runs,  # noqa: E402
                    write_report)
from selection_signals import run_record  # noqa: E402

#: Floor on probabilities before taking logs.
EPS = 1e-12


def aligned(p: np.ndarray, gt: np.ndarray, shift_grid) -> np.ndarray:
    """Distribution alignment of ``p`` (N, K) to the true class shares."""
    share = np.bincount(gt, minlength=p.shape[1]) / len(gt)
    q = p * share / np.maximum(p.mean(0), EPS)
    return q.argmax(1)


def best_shift(p: np.ndarray, gt: np.ndarray, shift_grid) -> np.ndarray:
    """The predictions of the per-class log-probability shift (first class
    fixed at 0) with the highest accuracy on ``gt``; ties: the first shift
    of the grid, which starts nearest to no shift."""
    logp = np.log(np.maximum(p, EPS))
    best, best_acc = logp.argmax(1), -1.0
    for shift in itertools.product(shift_grid, repeat=p.shape[1] - 1):
        pred = (logp + np.array((0.0, ) + shift)).argmax(1)
        acc = float(np.mean(pred == gt))
        if acc > best_acc:
            best, best_acc = pred, acc
    return best


#: name -> f(probabilities (N, K), true classes (N,), shift grid) -> classes
READOUTS: Dict[str, Callable[..., np.ndarray]] = {
    'raw': lambda p, gt, grid: p.argmax(1),
    'aligned': aligned,
    'best_shift': best_shift,
}


def shift_grid(limit: float, step: float) -> List[float]:
    """``0, -step, step, -2 step, ...`` up to ``limit``: no shift first."""
    n = int(round(limit / step))
    return [0.0] + [s * i * step for i in range(1, n + 1) for s in (-1, 1)]


def readouts(p: np.ndarray, gt: np.ndarray,
             grid: List[float]) -> Dict[str, float]:
    """Accuracy and recall per true class (%) of every read-out."""
    if not len(gt):
        raise ValueError('no images to measure')
    out: Dict[str, float] = {}
    for name, readout in READOUTS.items():
        pred = readout(p, gt, grid)
        out[f'{name}.accuracy'] = 100.0 * float(np.mean(pred == gt))
        for c in np.unique(gt):
            out[f'{name}.recall.{c}'] = 100.0 * float(
                np.mean(pred[gt == c] == c))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_study_args(p)
    p.add_argument('--seeds', type=int, nargs='+', required=True)
    p.add_argument('--shift-range', type=float, default=4.0)
    p.add_argument('--shift-step', type=float, default=0.25)
    p.add_argument('--out', required=True,
                   help='markdown report; the JSON goes beside it')
    return p.parse_args(argv)


def summarise(args) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{style: {variant: {key: mean over seeds, 'seeds': n}}}``; runs
    without a ``selection_signals.py`` record get one (as that script)."""
    grid = shift_grid(args.shift_range, args.shift_step)
    record_args = argparse.Namespace(
        batch_size=8, num=false_lesions.DEV_NUM, cache_dir=None)
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for style, variant, runs in seed_runs(args):
        per_seed = []
        for run in runs:
            record = run_record(run, record_args)
            per_seed.append(readouts(np.asarray(record['probs']['teacher']),
                                     np.asarray(record['gt_label']), grid))
        out.setdefault(style, {})[variant] = mean_over_seeds(per_seed)
    return out


def markdown(args, summary) -> str:
    classes = sorted({k.split('.')[-1] for v in summary.values()
                      for m in v.values() for k in m if '.recall.' in k},
                     key=int)
    heads = ['style', 'variant'] + [
        f'{name} acc % (recall {" / ".join(classes)})'
        for name in READOUTS] + ['seeds']

    def cell(m: Dict[str, float], name: str) -> str:
        recalls = ' / '.join(
            f"{m[f'{name}.recall.{c}']:.0f}"
            if f'{name}.recall.{c}' in m else '-' for c in classes)
        return f"{m[f'{name}.accuracy']:.1f} ({recalls})"

    rows: List[List[str]] = [
        [style, variant] + [cell(m, n) for n in READOUTS] + [str(m['seeds'])]
        for style, variants in summary.items()
        for variant, m in variants.items()]
    return '\n'.join([
        '# Class prior or features: teacher read-outs on the dev sets', '',
        f'Study folder `{args.out_dir}`, label ratio {args.ratio}, seeds '
        f'{args.seeds}; last checkpoint, teacher class probabilities on '
        'the dev set of each style (`research/selection_signals.py` '
        'records). raw: argmax; aligned: distribution alignment to the '
        'true class shares; best_shift: the best per-class log-probability '
        f'shift (grid +-{args.shift_range:g} in {args.shift_step:g} '
        'steps) fitted on the dev labels themselves, an upper bound on '
        'any prior correction. Recall per true class (index in '
        '`cls_classes`: 0 benign, 1 malignant, 2 normal). Means over '
        'seeds.', '', table(heads, rows), ''])


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary = summarise(args)
    if not summary:
        raise SystemExit(f'no run of {args.variants} under {args.out_dir}')
    md = markdown(args, summary)
    write_report(args, 'class_prior', md, start, summary=summary)
    return 0


if __name__ == '__main__':
    sys.exit(main())
