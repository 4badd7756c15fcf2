"""Does any signal besides confidence select accurate image pseudo-labels?

Amendment 21 item 1 (``benchmarks/results/PREREGISTRATION_styles.md``): a
candidate signal for selecting image pseudo-labels goes to training only
if, at the coverage that the teacher's confidence gives at ``t = 0.8``
(``--coverage-threshold``), it raises precision by >= 10 points
(``--gate-points``) over confidence alone on at least 3 of the 4
development styles (``--gate-styles``, ``--gate-min-styles``).

For each finished ``quality.py`` run of a per-style study
(``OUT_DIR/<style>/runs/<variant>/r<ratio>/seed<n>``, last checkpoint) it
computes, on the dev set of the run's style (``false_lesions.load_config``:
400 freshly generated images, generator seed 2000, neither the training
nor the held-out set), the class probabilities (softmax of the class
logits, as the pseudo-labeller sees them) of

- the teacher on each image (``teacher``),
- the teacher on its horizontal flip (``teacher_flip``),
- the student on each image (``student``),

kept in the run folder as ``selection_signals_dev.json``. Each signal of
:data:`SIGNALS` turns an image's probabilities into a predicted class and
a score; the ``k`` images with the highest scores are kept, ``k`` being the
number whose teacher confidence is >= ``--coverage-threshold``, and the
precision is the accuracy among them. The report gives, per style and
variant (means over seeds), each signal's precision at that coverage, its
gain over ``confidence`` and the gate's verdict (over the gate styles, per
variant).

Example::

    python research/selection_signals.py \\
        --out-dir benchmarks/runs/styles_1200 \\
        --styles crowded speckle shadowing varied annotated \\
        --variants hermes_unlabelled_off class_balanced_gated \\
        --seeds 0 1 2 --out benchmarks/results/selection_signals_1200it.md
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(HERE, '..', 'benchmarks'))
import false_lesions  # noqa: E402
from _common import environment, read_json, table, write_json  # noqa: E402
from _study import (add_dev_set_args, add_study_args,  # noqa: E402
                    load_run_model,
                    mean_over_seeds, require_finished, seed_runs,
                    write_report)

#: Per-run record kept in the run folder.
RECORD = 'selection_signals_dev.json'
#: The networks / views whose class probabilities each record keeps.
VIEWS = ('teacher', 'teacher_flip', 'student')
#: Score added to an image whose views agree, so that agreeing images rank
#: before every disagreeing one (a probability is at most 1).
AGREE_BONUS = 2.0

Probs = Dict[str, np.ndarray]  # view -> (N, K) class probabilities


def _agree(probs: Probs, views: Sequence[str]) -> np.ndarray:
    labels = [probs[v].argmax(1) for v in views]
    return np.all([labels[0] == other for other in labels[1:]], axis=0)


def _confidence(p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return p.argmax(1), p.max(1)


def _margin(p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    top2 = np.sort(p, axis=1)[:, -2:]
    return p.argmax(1), top2[:, 1] - top2[:, 0]


def _agreement(views: Sequence[str]):
    def signal(probs: Probs) -> Tuple[np.ndarray, np.ndarray]:
        label, score = _confidence(probs['teacher'])
        return label, score + AGREE_BONUS * _agree(probs, views)
    return signal


def _mean_of(views: Sequence[str]):
    def signal(probs: Probs) -> Tuple[np.ndarray, np.ndarray]:
        return _confidence(np.mean([probs[v] for v in views], axis=0))
    return signal


#: name -> f(probabilities per view) -> (predicted class (N,), score (N,)).
#: ``confidence`` is the reference every other signal is compared with.
SIGNALS: Dict[str, Callable[[Probs], Tuple[np.ndarray, np.ndarray]]] = {
    'confidence': lambda probs: _confidence(probs['teacher']),
    'margin': lambda probs: _margin(probs['teacher']),
    'flip_mean': _mean_of(('teacher', 'teacher_flip')),
    'flip_agree': _agreement(('teacher', 'teacher_flip')),
    'student_mean': _mean_of(('teacher', 'student')),
    'student_agree': _agreement(('teacher', 'student')),
    'all_agree': _agreement(VIEWS),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_study_args(p)
    p.add_argument('--seeds', type=int, nargs='+', required=True)
    p.add_argument('--coverage-threshold', type=float, default=0.8,
                   help='the coverage compared at: that of teacher '
                   'confidence >= this')
    p.add_argument('--gate-styles', nargs='+',
                   default=['crowded', 'speckle', 'shadowing', 'varied'],
                   help='the development styles the gate is judged on')
    p.add_argument('--gate-points', type=float, default=10.0)
    p.add_argument('--gate-min-styles', type=int, default=3)
    add_dev_set_args(p)
    p.add_argument('--out', required=True,
                   help='markdown report; the JSON goes beside it')
    return p.parse_args(argv)


def precision_at_coverage(probs: Probs, gt: np.ndarray,
                          threshold: float) -> Dict[str, object]:
    """``k`` (images whose teacher confidence is >= ``threshold``), the
    coverage (% of images) and each signal's precision (%) among its ``k``
    best-scored images (ties: the earlier image first); precision None
    where ``k`` is 0."""
    if not len(gt):
        raise ValueError('no images to measure')
    k = int((probs['teacher'].max(1) >= threshold).sum())
    out: Dict[str, object] = dict(images=len(gt), k=k,
                                  coverage=100.0 * k / len(gt))
    for name, signal in SIGNALS.items():
        label, score = signal(probs)
        kept = np.argsort(-score, kind='stable')[:k]
        out[f'precision.{name}'] = (
            100.0 * float(np.mean(label[kept] == gt[kept])) if k else None)
        out[f'accuracy.{name}'] = 100.0 * float(np.mean(label == gt))
    return out


def compute_record(run: str, args) -> dict:
    """Class probabilities of the run's last checkpoint on its style's dev
    set, per view in :data:`VIEWS`."""
    import torch
    from mmengine.runner import Runner

    start = time.perf_counter()
    model, cfg, config, checkpoint = load_run_model(run, args.num,
                                                    args.cache_dir)
    if not (hasattr(model, 'teacher') and hasattr(model, 'student')):
        raise SystemExit(f'{run}: {type(model).__name__} has no teacher '
                         'and student to compare')
    networks = dict(teacher=(model.teacher.module, False),
                    teacher_flip=(model.teacher.module, True),
                    student=(model.student, False))
    probs: Dict[str, List[List[float]]] = {v: [] for v in VIEWS}
    gt: List[int] = []
    loader = Runner.build_dataloader(
        dict(cfg.test_dataloader, batch_size=args.batch_size))
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            x = data['inputs']
            gt += [int(s.gt_label) for s in data['data_samples']]
            for view in VIEWS:
                net, flip = networks[view]
                _, cls_logits = net._forward(x.flip(-1) if flip else x)
                probs[view] += cls_logits.float().softmax(1).tolist()
    return dict(config=config, checkpoint=checkpoint,
                test_set=dict(cfg.test_dataloader.dataset), gt_label=gt,
                probs=probs, environment=environment(),
                wall_time_s=time.perf_counter() - start)


def run_record(run: str, args) -> dict:
    """The run's kept record, computed on first use; only for a finished
    run (``quality.py`` writes ``heldout_metrics.json`` once training has
    ended, so an interrupted run's checkpoint is never used)."""
    path = osp.join(run, RECORD)
    if not osp.exists(path):
        require_finished(run)
        write_json(path, compute_record(run, args))
    record = read_json(path)
    missing = [v for v in VIEWS if v not in record.get('probs', {})]
    if missing:
        raise SystemExit(f'{path}: no probabilities for {missing}; delete '
                         'it to recompute')
    return record


def summarise(args) -> Tuple[Dict[str, Dict[str, Dict[str, object]]],
                             float]:
    """``{style: {variant: {key: mean over seeds, 'seeds': n}}}`` over the
    seeds whose run folder exists, and the seconds their records took."""
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    records_wall_s = 0.0
    for style, variant, runs in seed_runs(args):
        per_seed = []
        for run in runs:
            record = run_record(run, args)
            records_wall_s += float(record.get('wall_time_s') or 0.0)
            probs = {v: np.asarray(record['probs'][v]) for v in VIEWS}
            per_seed.append(precision_at_coverage(
                probs, np.asarray(record['gt_label']),
                args.coverage_threshold))
        means = mean_over_seeds(per_seed)
        for name in SIGNALS:
            # gain paired per seed, over the seeds with a precision
            gains = [s[f'precision.{name}'] - s['precision.confidence']
                     for s in per_seed if s['k']]
            means[f'gain.{name}'] = (statistics.fmean(gains)
                                     if gains else None)
        out.setdefault(style, {})[variant] = means
    return out, records_wall_s


def gate(args, summary) -> Dict[str, Dict[str, Dict[str, object]]]:
    """Per variant and signal: the gate styles where the mean gain is >=
    ``--gate-points``, the gate styles measured, and whether it passes
    (>= ``--gate-min-styles`` styles, every gate style measured)."""
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    for variant in args.variants:
        measured = [s for s in args.gate_styles
                    if variant in summary.get(s, {})]
        if not measured:
            continue
        for name in SIGNALS:
            if name == 'confidence':
                continue
            gains = {s: summary[s][variant][f'gain.{name}']
                     for s in measured}
            passing = [s for s, g in gains.items()
                       if g is not None and g >= args.gate_points]
            out.setdefault(variant, {})[name] = dict(
                passing_styles=passing, measured_styles=measured,
                passes=(len(measured) == len(args.gate_styles)
                        and len(passing) >= args.gate_min_styles))
    return out


def markdown(args, summary, verdicts) -> str:
    def cell(value) -> str:
        return '-' if value is None else f'{value:.1f}'

    names = list(SIGNALS)
    heads = ['style', 'variant', 'coverage %'] + [
        f'{n} prec %' + ('' if n == 'confidence' else ' (gain)')
        for n in names] + ['seeds']
    rows = []
    for style, variants in summary.items():
        for variant, m in variants.items():
            rows.append([style, variant, cell(m['coverage'])] + [
                cell(m[f'precision.{n}']) +
                ('' if n == 'confidence' else f" ({cell(m[f'gain.{n}'])})")
                for n in names] + [str(m['seeds'])])
    acc_rows = [[style, variant] + [cell(m[f'accuracy.{n}'])
                                    for n in names]
                for style, variants in summary.items()
                for variant, m in variants.items()]
    verdict_rows = [[variant, name, ', '.join(v['passing_styles']) or '-',
                     'passes' if v['passes'] else 'fails']
                    for variant, signals in verdicts.items()
                    for name, v in signals.items()]
    return '\n'.join([
        '# Selection signals for image pseudo-labels', '',
        f'Study folder `{args.out_dir}`, label ratio {args.ratio}, seeds '
        f'{args.seeds}; dev set of each style ({false_lesions.DEV_NUM} '
        f'images, generator seed {false_lesions.DEV_SEED}); last '
        'checkpoint. Each signal keeps its best-scored images, as many as '
        'the teacher\'s confidence keeps at '
        f't = {args.coverage_threshold:g} (coverage); prec: accuracy among '
        'them; gain: over `confidence`, paired per seed. Means over '
        'seeds.', '', table(heads, rows), '',
        'Accuracy of each signal\'s predicted class over every image '
        '(flip_mean / student_mean predict from averaged probabilities; '
        'the others keep the teacher\'s class):', '',
        table(['style', 'variant'] + names, acc_rows), '',
        f'Gate (amendment 21 item 1): gain >= {args.gate_points:g} points '
        f'on >= {args.gate_min_styles} of {args.gate_styles}:', '',
        table(['variant', 'signal', 'styles passing', 'verdict'],
              verdict_rows), ''])


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary, records_wall_s = summarise(args)
    if not summary:
        raise SystemExit(f'no run of {args.variants} under {args.out_dir}')
    verdicts = gate(args, summary)
    md = markdown(args, summary, verdicts)
    write_report(args, 'selection_signals', md, start, summary=summary,
                 gate=verdicts, records_wall_s=records_wall_s)
    return 0


if __name__ == '__main__':
    sys.exit(main())
