"""Would a stricter image threshold select accurate image pseudo-labels?

Issue 20, after amendment 20: perfect image pseudo-labels, through Hermes's
own path, recover 69% of the twin -> fully-supervised accuracy gap where
the teacher's own recover 7% (``research/oracle_labels``), and the reliable
ones are about as accurate as the model (``pl.cls.precision`` 0.53-0.88 at
image thresholds 0.80-0.88; ``research/pseudo_label_quality.py``). So the
next question is selection: is there a threshold on the trained teacher's
top image probability above which its predictions are much more accurate
than overall, and how many images are left there?

For each ``quality.py`` run of a per-style study
(``OUT_DIR/<style>/runs/<variant>/r<ratio>/seed<n>``), it takes the per-image
record of ``research/false_lesions.py`` on the dev set of the run's style
(400 freshly generated images, generator seed 2000: neither the training
nor the held-out set; last checkpoint, Hermes tested with its teacher;
computed once and kept as ``RUN/false_lesions_dev.json``) and reports, per
style and variant, means over seeds of the accuracy and, for each
``--thresholds`` value t, the coverage (share of images whose top class
probability is >= t) and the precision (accuracy among them), over every
image and over the images where the classifier and the mask agree on
whether there is a lesion (a selection signal other than confidence).

Example::

    python research/image_calibration.py \\
        --out-dir benchmarks/runs/styles_1200 \\
        --styles crowded speckle shadowing varied --seeds 0 1 2 \\
        --variants class_balanced_gated \\
        --out benchmarks/results/image_calibration_1200it_s28.md
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(HERE, '..', 'benchmarks'))
import false_lesions  # noqa: E402
from _common import read_json, table  # noqa: E402
from _study import (add_study_args, last_checkpoint,  # noqa: E402
                    mean_over_seeds, require_finished, seed_runs,
                    write_report)

#: Per-run record of ``false_lesions.py`` kept in the run folder.
RECORD = 'false_lesions_dev.json'
#: Threshold passed for models without pseudo-label thresholds (unused by
#: this report; see :func:`supervised_thresholds`).
SUPERVISED_TAU = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_study_args(p)
    p.add_argument('--seeds', type=int, nargs='+', required=True)
    p.add_argument('--thresholds', type=float, nargs='+',
                   default=[0.5, 0.8, 0.9, 0.95, 0.99])
    p.add_argument('--out', required=True,
                   help='markdown report; the JSON goes beside it')
    return p.parse_args(argv)


def tasks_agree(row: dict) -> bool:
    """The classifier and the mask answer "is there a lesion?" alike
    (argmax a lesion class <=> a lesion pixel is predicted)."""
    return row['argmax_lesion_free'] != row['predicts_lesion']


def calibration(rows: Sequence[dict],
                thresholds: Sequence[float]) -> Dict[str, object]:
    """Accuracy (%) of ``rows`` (``false_lesions`` per-image records) and,
    per threshold, coverage and precision (%; precision None where no
    image reaches the threshold): over every image (``coverage@t``,
    ``precision@t``) and over the images where the two tasks agree on
    whether there is a lesion (``agree_coverage@t``, ``agree_precision@t``;
    coverage still as a share of every image); ``recall.<c>``: accuracy on
    the images of true class ``c``."""
    if not rows:
        raise ValueError('no images to measure')
    correct = [r['pred_label'] == r['gt_label'] for r in rows]
    out: Dict[str, object] = dict(
        images=len(rows), accuracy=100 * sum(correct) / len(rows))
    for c in sorted({r['gt_label'] for r in rows}):
        hits = [ok for r, ok in zip(rows, correct) if r['gt_label'] == c]
        out[f'recall.{c}'] = 100 * sum(hits) / len(hits)
    for prefix, keep in (('', lambda r: True), ('agree_', tasks_agree)):
        for t in thresholds:
            kept = [c for r, c in zip(rows, correct)
                    if r['max_score'] >= t and keep(r)]
            out[f'{prefix}coverage@{t:g}'] = 100 * len(kept) / len(rows)
            out[f'{prefix}precision@{t:g}'] = (100 * sum(kept) / len(kept)
                                               if kept else None)
    return out


def supervised_thresholds(config: str) -> List[str]:
    """``false_lesions.py`` options for a model without pseudo-label
    thresholds (a supervised or fully-supervised run): the thresholds only
    set per-image fields that this report does not read
    (``reliable_lesion_px``), so any value does; none for a model with a
    pseudo-labeller (its own thresholds are recorded)."""
    from mmengine.config import Config

    if 'pseudo_labeler' in Config.fromfile(config).model:
        return []
    return ['--tau-pixel', str(SUPERVISED_TAU), '--tau-image',
            str(SUPERVISED_TAU)]


def run_rows(run: str) -> Tuple[List[dict], float]:
    """The run's per-image dev-set rows and the seconds it took to compute
    them, computed on first use from its config and last checkpoint."""
    path = osp.join(run, RECORD)
    if not osp.exists(path):
        require_finished(run)
        checkpoint = last_checkpoint(run)
        config = osp.join(run, 'config.py')
        false_lesions.main([config, checkpoint, '--out', path] +
                           supervised_thresholds(config))
    record = read_json(path)
    rows = record['images']
    if rows and 'max_score' not in rows[0]:
        raise SystemExit(f'{path}: written before false_lesions.py kept '
                         "'max_score'; delete it to recompute")
    return rows, float(record.get('wall_time_s') or 0.0)


def summarise(args) -> Tuple[Dict[str, Dict[str, Dict[str, object]]],
                             float]:
    """``{style: {variant: {key: mean over seeds, 'seeds': n}}}`` over the
    seeds whose run folder exists, and the seconds their per-image records
    took to compute."""
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    records_wall_s = 0.0
    for style, variant, runs in seed_runs(args):
        per_seed = []
        for run in runs:
            rows, wall_s = run_rows(run)
            records_wall_s += wall_s
            per_seed.append(calibration(rows, args.thresholds))
        # a class may be missing from a seed's images: union of keys
        out.setdefault(style, {})[variant] = mean_over_seeds(
            per_seed, skip=('images', ))
    return out, records_wall_s


def markdown(args, summary) -> str:
    def cell(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.1f}'

    heads = ['style', 'variant', 'acc %'] + [
        f'cov / prec @{t:g} %' for t in args.thresholds] + ['seeds']

    def rows(prefix: str) -> List[List[str]]:
        out = []
        for style, variants in summary.items():
            for variant, m in variants.items():
                out.append([style, variant, cell(m['accuracy'])] + [
                    f"{cell(m[f'{prefix}coverage@{t:g}'])} / "
                    f"{cell(m[f'{prefix}precision@{t:g}'])}"
                    for t in args.thresholds
                ] + [str(m['seeds'])])
        return out

    return '\n'.join([
        '# Image calibration of the trained models', '',
        f'Study folder `{args.out_dir}`, label ratio {args.ratio}, seeds '
        f'{args.seeds}; dev set of each style ({false_lesions.DEV_NUM} '
        f'images, generator seed {false_lesions.DEV_SEED}); last '
        'checkpoint, Hermes-type models with their teacher. coverage: '
        'share of images whose top class probability is >= t; prec: '
        'accuracy among them. Means over seeds.',
        '', table(heads, rows('')), '',
        'The same, keeping only the images where the classifier and the '
        'mask agree on whether there is a lesion (coverage: share of '
        'every image):', '', table(heads, rows('agree_')), '',
        'Recall per true class (its index in the config\'s `cls_classes`; '
        'BUSI and the synthetic sets: 0 benign, 1 malignant, 2 normal):',
        '', recall_table(summary), ''])


def recall_table(summary) -> str:
    classes = sorted({k for variants in summary.values()
                      for m in variants.values() for k in m
                      if k.startswith('recall.')},
                     key=lambda k: int(k.split('.')[1]))
    rows = [[style, variant] + [
        '-' if m.get(k) is None else f'{m[k]:.1f}' for k in classes]
        for style, variants in summary.items()
        for variant, m in variants.items()]
    return table(['style', 'variant'] +
                 [f'class {k.split(".")[1]} %' for k in classes], rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary, records_wall_s = summarise(args)
    if not summary:
        raise SystemExit(f'no run of {args.variants} under {args.out_dir}')
    md = markdown(args, summary)
    write_report(args, 'image_calibration', md, start, summary=summary,
                 records_wall_s=records_wall_s)
    return 0


if __name__ == '__main__':
    sys.exit(main())
