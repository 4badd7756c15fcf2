"""Are the 1/8-label models' image features poor, or only their heads?

Amendment 21 items 1-2 (``benchmarks/results/PREREGISTRATION_styles.md``):
no selection rule repairs the 1/8-label teacher's image labels, and no
shift of its class scores fixes "normal called benign"
(``research/class_prior.py``). That leaves two places for the error: the
image features (the classification vector the head sees) or the head
fitted on 50 labelled images. A linear probe tells them apart: a logistic
regression fitted on the features of *labelled dev images* (cross-validated,
so each image is scored by a probe that never saw it) shows how much class
information the features hold; if it beats the model's own head by far, the
head is the bottleneck (and a label-free feature term such as
``research/instance_contrast`` is not the first fix); if it does not, the
features are.

For each finished run of a per-style study (last checkpoint; Hermes-type
models: the teacher, as in prediction), on its style's dev set
(``false_lesions.load_config``: 400 freshly generated images, generator
seed 2000), it keeps the classification vectors and labels as
``RUN/cls_features_dev.npz`` and reports per style and variant (means over
seeds): the head's accuracy, the probe's ``--folds``-fold cross-validated
accuracy (standardised features, ``LogisticRegression(C)`` for each
``--C``), and the recall per true class of each::

    python research/linear_probe.py --out-dir benchmarks/runs/styles_1200 \\
        --styles crowded speckle shadowing varied annotated \\
        --variants hermes_unlabelled_off class_balanced_gated \\
        fully_supervised --seeds 0 1 2 \\
        --out benchmarks/results/linear_probe_1200it.md
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(HERE, '..', 'benchmarks'))
import false_lesions  # noqa: E402
from _common import table  # noqa: E402
from _study import (add_dev_set_args, add_study_args,  # noqa: E402
                    load_run_model,
                    mean_over_seeds, require_finished, seed_runs,
                    write_report)

#: Per-run record kept in the run folder.
RECORD = 'cls_features_dev.npz'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_study_args(p)
    p.add_argument('--seeds', type=int, nargs='+', required=True)
    p.add_argument('--folds', type=int, default=5)
    p.add_argument('--C', type=float, nargs='+', default=[0.01, 0.1, 1.0],
                   help='inverse regularisations of the probe (one probe '
                   'each)')
    add_dev_set_args(p)
    p.add_argument('--out', required=True,
                   help='markdown report; the JSON goes beside it')
    return p.parse_args(argv)


def compute_record(run: str, args) -> Dict[str, np.ndarray]:
    """Classification vectors, head probabilities and labels of the run's
    last checkpoint on its style's dev set."""
    import torch
    from mmengine.runner import Runner

    start = time.perf_counter()
    model, cfg, _, _ = load_run_model(run, args.num, args.cache_dir)
    # the network the model predicts with (Hermes: the teacher)
    net = getattr(model, 'predictor', model)
    feats: List[np.ndarray] = []
    probs: List[np.ndarray] = []
    labels: List[int] = []
    with torch.no_grad():
        for batch in Runner.build_dataloader(
                dict(cfg.test_dataloader, batch_size=args.batch_size)):
            data = model.data_preprocessor(batch, False)
            out = net.forward_train(data['inputs'])
            feats.append(out.task_feats.cls_vec.float().numpy())
            probs.append(out.cls_logits.float().softmax(1).numpy())
            labels += [int(s.gt_label) for s in data['data_samples']]
    return dict(cls_vec=np.concatenate(feats), probs=np.concatenate(probs),
                gt_label=np.asarray(labels),
                wall_time_s=np.asarray(time.perf_counter() - start))


def run_record(run: str, args) -> Dict[str, np.ndarray]:
    """The run's kept record, computed on first use; only for a finished
    run (``heldout_metrics.json`` exists)."""
    path = osp.join(run, RECORD)
    if not osp.exists(path):
        require_finished(run)
        np.savez(path, **compute_record(run, args))
    with np.load(path) as record:
        return {k: record[k] for k in record.files}


def probe_name(C: float) -> str:
    return f'probe_C{C:g}'


def probe(feats: np.ndarray, probs: np.ndarray, gt: np.ndarray,
          folds: int, Cs: Sequence[float]) -> Dict[str, float]:
    """Accuracy and recall per true class (%) of the head and of one
    cross-validated linear probe per value of ``Cs`` (same folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if np.bincount(gt).min(initial=len(gt)) < folds:
        raise ValueError(f'every class needs >= {folds} images for '
                         f'{folds}-fold cross-validation, got '
                         f'{np.bincount(gt).tolist()}')
    predictions = dict(head=probs.argmax(1))
    for C in Cs:
        predictions[probe_name(C)] = cross_val_predict(
            make_pipeline(StandardScaler(),
                          LogisticRegression(C=C, max_iter=2000)),
            feats, gt,
            cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    out: Dict[str, float] = {}
    for name, labels in predictions.items():
        out[f'{name}.accuracy'] = 100.0 * float(np.mean(labels == gt))
        for c in np.unique(gt):
            out[f'{name}.recall.{c}'] = 100.0 * float(
                np.mean(labels[gt == c] == c))
    return out


def summarise(args):
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    records_wall_s = 0.0
    for style, variant, runs in seed_runs(args):
        per_seed = []
        for run in runs:
            record = run_record(run, args)
            records_wall_s += float(record['wall_time_s'])
            per_seed.append(probe(record['cls_vec'], record['probs'],
                                  record['gt_label'], args.folds, args.C))
        out.setdefault(style, {})[variant] = mean_over_seeds(per_seed)
    return out, records_wall_s


def markdown(args, summary) -> str:
    classes = sorted({k.split('.')[-1] for v in summary.values()
                      for m in v.values() for k in m if '.recall.' in k},
                     key=int)

    def cell(m, name: str) -> str:
        recalls = ' / '.join(f"{m[f'{name}.recall.{c}']:.0f}"
                             if m.get(f'{name}.recall.{c}') is not None
                             else '-' for c in classes)
        return f"{m[f'{name}.accuracy']:.1f} ({recalls})"

    names = ['head'] + [probe_name(C) for C in args.C]

    def best_gain(m) -> str:
        best = max(m[f'{n}.accuracy'] for n in names[1:])
        return f"{best - m['head.accuracy']:+.1f}"

    rows = [[style, variant] + [cell(m, n) for n in names] +
            [best_gain(m), str(m['seeds'])]
            for style, variants in summary.items()
            for variant, m in variants.items()]
    recall = ' / '.join(classes)
    return '\n'.join([
        '# Linear probe of the image features on the dev sets', '',
        f'Study folder `{args.out_dir}`, label ratio {args.ratio}, seeds '
        f'{args.seeds}; last checkpoint (Hermes-type models: the teacher); '
        f'dev set of each style ({args.num} images, generator seed '
        f'{false_lesions.DEV_SEED}). head: the model\'s own classifier; '
        'probe_C<C>: logistic regression with inverse regularisation C on '
        f'the standardised classification vectors, {args.folds}-fold '
        'cross-validated on the dev labels (same folds for every C); best '
        '- head: the best probe\'s accuracy minus the head\'s (the best of '
        'several C on the same folds: slightly optimistic). Accuracy % '
        '(recall % per true class, index in `cls_classes`: 0 benign, 1 '
        'malignant, 2 normal). Means over seeds.',
        '', table(['style', 'variant'] +
                  [f'{n} acc (recall {recall})' for n in names] +
                  ['best - head', 'seeds'], rows), ''])


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary, records_wall_s = summarise(args)
    if not summary:
        raise SystemExit(f'no run of {args.variants} under {args.out_dir}')
    write_report(args, 'linear_probe', markdown(args, summary), start,
                 summary=summary, records_wall_s=records_wall_s)
    return 0


if __name__ == '__main__':
    sys.exit(main())
