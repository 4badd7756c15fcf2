"""How good were a study's pseudo-labels at the end of training?

Reads the ``quality.py`` run folders of a per-style study
(``OUT_DIR/<style>/runs/<variant>/r<ratio>/seed<n>``, as written by
``benchmarks/style_study.py``) and reports, per style and variant, the mean
over seeds of

* the last ``--last`` logged values of each pseudo-label diagnostic
  (``pl.*``: precision / recall against the unlabelled images' hidden
  annotations, ``pl.seg.false_lesion_images`` where it was logged;
  ``zone.cls.*``; the image thresholds ``thr.cls.high.*``), from each run's
  ``vis_data/scalars.json`` (every session of a resumed run, by step;
  ``quality.read_scalars``);
* the held-out accuracy and false-lesion rate (``heldout_metrics.json``).

Two questions of issue 20 are read from it: are the reliable image
pseudo-labels more accurate than the model that makes them (if
``pl.cls.precision`` is no higher than its accuracy, image self-training
has little to teach), and do the pixel pseudo-labels put lesions on views
without one (``pl.seg.false_lesion_images``)?

Example::

    python research/pseudo_label_quality.py \\
        --out-dir benchmarks/runs/styles_1200 \\
        --styles crowded speckle shadowing varied annotated \\
        --variants class_balanced_gated hermes_class_dice \\
        --out benchmarks/results/pseudo_label_quality_1200it.md
"""
import argparse
import glob
import os.path as osp
import statistics
import sys
from typing import Dict, Optional

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..',
                            'benchmarks'))
from _common import read_json, table, write_json  # noqa: E402
from quality import read_scalars  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _study import add_study_args, variant_dir  # noqa: E402,F401

#: Logged diagnostics reported (mean of the last --last values per run).
LOGGED = ('pl.cls.precision', 'zone.cls.reliable', 'pl.cls.0.recall',
          'pl.cls.1.recall', 'pl.cls.2.recall', 'thr.cls.high.0',
          'pl.seg.lesion.precision', 'pl.seg.lesion.recall',
          'pl.seg.false_lesion_images')
#: Held-out test metrics reported beside them.
HELDOUT = ('cls/accuracy', 'seg/false_lesion_rate')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_study_args(p)
    p.add_argument('--last', type=int, default=10,
                   help='logged values averaged at the end of each run')
    p.add_argument('--out', required=True,
                   help='markdown report; the JSON goes next to it')
    args = p.parse_args(argv)
    if args.last < 1:
        p.error(f'--last must be >= 1, got {args.last}')
    return args


def run_values(run: str, last: int) -> Optional[Dict[str, float]]:
    """One run's end-of-training diagnostics and held-out metrics (None
    without a finished held-out test)."""
    heldout = osp.join(run, 'heldout_metrics.json')
    if not osp.exists(heldout):
        return None
    metrics = read_json(heldout)
    out = {key: float(metrics[key]) for key in HELDOUT if key in metrics}
    rows = read_scalars(run)
    if not rows:
        raise FileNotFoundError(f'{run}: no */vis_data/scalars.json, so no '
                                'logged pseudo-label diagnostics')
    series = {key: [float(row[key]) for row in rows if key in row]
              for key in LOGGED}
    for key, values in series.items():
        if values:
            out[key] = statistics.fmean(values[-last:])
    return out


def summarise(args) -> Dict[str, Dict[str, Dict[str, object]]]:
    """``{style: {variant: {key: mean over seeds, 'seeds': [...]}}}``."""
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    for style in args.styles:
        for variant in args.variants:
            pattern = osp.join(variant_dir(args, style, variant), 'seed*')
            runs = {}
            for run in sorted(glob.glob(pattern)):
                values = run_values(run, args.last)
                if values is not None:
                    runs[int(osp.basename(run)[len('seed'):])] = values
            if not runs:
                continue
            entry: Dict[str, object] = dict(seeds=sorted(runs))
            for key in HELDOUT + LOGGED:
                values = [v[key] for v in runs.values() if key in v]
                entry[key] = statistics.fmean(values) if values else None
            out.setdefault(style, {})[variant] = entry
    return out


def markdown(args, summary) -> str:
    keys = HELDOUT + LOGGED

    def cell(value):
        return '-' if value is None else f'{value:.2f}'

    rows = [[style, variant] + [cell(entry[k]) for k in keys] +
            [len(entry['seeds'])]
            for style, per in summary.items()
            for variant, entry in per.items()]
    return '\n'.join([
        '# Pseudo-label quality at the end of training', '',
        f'Study folder `{args.out_dir}`, label ratio {args.ratio}; logged '
        f'values: mean of the last {args.last} per run, then over seeds; '
        'held-out metrics in %, logged ones as fractions. `-`: not logged '
        'by that run.', '',
        table(['style', 'variant'] + list(keys) + ['seeds'], rows), ''])


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = summarise(args)
    if not summary:
        raise SystemExit(f'no finished run under {args.out_dir} for styles '
                         f'{args.styles} and variants {args.variants}')
    text = markdown(args, summary)
    with open(args.out, 'w') as f:
        f.write(text)
    write_json(osp.splitext(args.out)[0] + '.json',
               dict(args=vars(args), summary=summary))
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
