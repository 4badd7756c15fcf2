"""Per-seed paired comparison of quality-benchmark runs, kept in one JSON
that later invocations extend.

``quality.py`` reports paired differences of the runs its output folder
holds. A comparison decided over many seeds (see
``results/PREREGISTRATION_accuracy_24_seeds.md``) outlives any one folder of
checkpoints, so this script writes every seed's test metrics for each
variant and the reference (``supervised``) into a JSON (``--out``) and,
given ``--previous`` JSONs of earlier calls, adds their seeds that the
folder no longer holds (a seed present in both must have the same numbers,
else it stops and names it). For each test set (``split``: the split's
test subset; ``heldout``; and each ``--extra NAME``, the metrics file
``RUN/NAME.json``, e.g. ``heldout_small_components_x0.5_mask_decides``) and
metric it reports the paired difference: mean ± std, two-sided paired
t-test p (``quality.paired_test``), Wilcoxon signed-rank p
(``scipy.stats.wilcoxon``, zero differences dropped) and how many seeds
are higher / tied / lower::

    python research/seed_pairs.py --iters 2400 --val-points 4 \\
        --ratios 0.125 --seeds 0 1 2 3 4 5 6 7 --variants supervised hermes \\
        --out-dir benchmarks/runs/q2400 \\
        --extra heldout_small_components_x0.5_mask_decides \\
        --out benchmarks/results/seed_pairs_2400it.json

Requested seeds without a finished pair (neither in the folder nor in a
``--previous`` file) are listed as ``missing_seeds`` and printed.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional

# the benchmark helpers (_common, quality) live in benchmarks/
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'benchmarks'))
import quality  # noqa: E402  (run folders, metric keys, the reference)
from _common import environment, read_json, table, write_json  # noqa: E402

#: Test sets always collected: name -> key of the metrics in run.json.
BUILTIN_SOURCES = {'split': 'metrics', 'heldout': 'heldout_metrics'}
METRIC_KEYS = [key for key, _ in quality.METRICS]


def collect(args, extra: List[str]) -> Dict[str, Dict[str, Dict]]:
    """``{variant: {seed: {source: {metric: value}}}}`` of the finished runs
    in ``args.out_dir`` (seeds as strings, as they come back from JSON)."""
    out: Dict[str, Dict[str, Dict]] = {}
    for variant, ratio, seed in quality.planned_runs(args):
        wd = quality.run_dir(args, variant, ratio, seed)
        path = osp.join(wd, 'run.json')
        if not osp.exists(path):
            continue
        record = read_json(path)
        if record.get('status') != 'ok':
            continue
        sources = {name: record[key] for name, key in BUILTIN_SOURCES.items()
                   if key in record}
        for name in extra:
            file = osp.join(wd, f'{name}.json')
            if osp.exists(file):
                sources[name] = read_json(file)
        out.setdefault(variant, {})[str(seed)] = {
            name: {k: metrics[k] for k in METRIC_KEYS if k in metrics}
            for name, metrics in sources.items()}
    return out


def merge(runs: Dict, previous: Dict, origin: str) -> None:
    """Add ``previous``'s seeds to ``runs``; a seed in both must agree."""
    for variant, seeds in previous.items():
        mine = runs.setdefault(variant, {})
        for seed, sources in seeds.items():
            if seed not in mine:
                mine[seed] = sources
                continue
            for name, metrics in sources.items():
                for key, value in metrics.items():
                    now = mine[seed].get(name, {}).get(key)
                    if now is not None and abs(now - value) > 1e-9:
                        raise SystemExit(
                            f'{origin}: {variant} seed {seed} {name} {key} '
                            f'is {value}, the run folder has {now}')
                    mine[seed].setdefault(name, {}).setdefault(key, value)


def compare(ours: Dict, ref: Dict, sources: List[str]) -> Dict[str, Any]:
    """Paired statistics of ``ours`` minus ``ref`` per source and metric."""
    from scipy.stats import wilcoxon

    out: Dict[str, Any] = {}
    for name in sources:
        seeds = sorted((s for s in ours if s in ref and name in ours[s]
                        and name in ref[s]), key=int)
        per_key: Dict[str, Any] = {}
        for key in METRIC_KEYS:
            pairs = [(ours[s][name].get(key), ref[s][name].get(key))
                     for s in seeds]
            if not pairs or any(None in p for p in pairs):
                continue
            diffs = [a - b for a, b in pairs]
            test = quality.paired_test(*map(list, zip(*pairs)))
            per_key[key] = dict(
                n=test['n'], mean=test['mean'], std=test['std'],
                higher=sum(d > 0 for d in diffs),
                tied=sum(d == 0 for d in diffs),
                lower=sum(d < 0 for d in diffs), t_p=test['p'],
                wilcoxon_p=float(wilcoxon(diffs).pvalue) if any(diffs)
                else None)
        if per_key:
            out[name] = dict(per_key, seeds=[int(s) for s in seeds])
    return out


def fmt_p(p: Optional[float]) -> str:
    return '-' if p is None else f'{p:.3f}'


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True, help='JSON to write')
    p.add_argument('--previous', nargs='+', default=[],
                   help='JSONs of earlier calls whose seeds to include')
    p.add_argument('--extra', nargs='+', default=[],
                   help='more test sets: RUN/<NAME>.json metric files')
    p.add_argument('--metric', default='cls/accuracy',
                   choices=METRIC_KEYS, help='metric of the per-seed table')
    own, rest = p.parse_known_args(argv)
    args = quality.parse_args(rest)
    start = time.perf_counter()
    runs = collect(args, own.extra)
    for path in own.previous:
        merge(runs, read_json(path)['runs'], path)
    ref = runs.get(quality.REFERENCE, {})
    sources = list(BUILTIN_SOURCES) + own.extra
    others = [v for v in args.variants if v != quality.REFERENCE]
    paired = {v: compare(runs.get(v, {}), ref, sources) for v in others}
    complete = {s for s in ref if all(s in runs.get(v, {}) for v in others)}
    missing = [s for s in args.seeds if str(s) not in complete]
    result = dict(
        benchmark='seed_pairs', reference=quality.REFERENCE,
        args=dict(vars(args), previous=own.previous, extra=own.extra),
        runs={v: dict(sorted(runs.get(v, {}).items(), key=lambda i: int(
            i[0]))) for v in [quality.REFERENCE] + others},
        paired=paired, missing_seeds=missing, environment=environment(),
        wall_time_s=time.perf_counter() - start)
    write_json(own.out, result)
    key = own.metric
    for variant in others:
        rows = [[name, e[key]['n'], f'{e[key]["mean"]:+.2f} ± '
                 f'{e[key]["std"]:.2f}', fmt_p(e[key]['t_p']),
                 fmt_p(e[key]['wilcoxon_p']),
                 f'{e[key]["higher"]}/{e[key]["tied"]}/{e[key]["lower"]}']
                for name, e in paired[variant].items() if key in e]
        print(f'{variant} - {quality.REFERENCE}, {key}:')
        print(table(['test set', 'pairs', 'mean ± std', 't-test p',
                     'Wilcoxon p', 'higher/tied/lower'], rows))
        print(table(['seed'] + [f'{quality.REFERENCE} {n}' for n in sources]
                    + [f'{variant} {n}' for n in sources],
                    [[s] + [runs[v][s].get(n, {}).get(key)
                            for v in (quality.REFERENCE, variant)
                            for n in sources]
                     for s in sorted(complete, key=int)], digits=2))
    if missing:
        print(f'missing seeds (no finished pair): {missing}')
    print(f'wrote {own.out}')
    return result


if __name__ == '__main__':
    main()
