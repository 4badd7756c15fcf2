"""Hermes vs. its baselines on every synthetic data style (issue 20).

A method tuned on one style of synthetic data has learnt that style. This
harness runs ``benchmarks/quality.py`` once per style (``--style``; one
output folder per style, so every run is resumable and reusable), then
writes one per-style report:

* per style and variant: held-out lesion-image Dice, Dice, lesion-pixel
  recall and precision (over the whole set: under- vs over-segmentation),
  the false-lesion rate (share of normal images given a lesion) and
  accuracy
  (mean ± std over seeds; last checkpoint; Hermes-type models tested with
  their EMA teacher);
* paired per seed (same split, same labelled images): each variant minus
  each ``--references`` variant (default ``supervised`` and
  ``supervised_matched``) where it ran;
* the share of the reference -> fully-supervised gap that each
  ``--methods`` variant recovers, per reference and style, and averaged
  over the styles (for the false-lesion rate the gap is measured down);
* the held-out style (``synthetic.HELDOUT_STYLE``) marked in every table
  and averaged separately: it is never used to choose a setting.

Numbers are read from each style's ``results.json`` as written by
``quality.py``; nothing is re-computed from logs. Styles, seeds or variants
without finished runs show '-', so the report states what was run.

Examples::

    # the issue's bar: every style, 5 seeds, 2400 iterations
    python benchmarks/style_study.py --seeds 0 1 2 3 4 --iters 2400 \
        --variants supervised supervised_matched fully_supervised hermes
    # ablations and baselines, 3 seeds, two styles
    python benchmarks/style_study.py --styles crowded annotated \
        --seeds 0 1 2 --iters 2400 --variants supervised mean_teacher \
        supervised_ema no_itas single_threshold no_contrast \
        no_pix_contrast no_consistency hermes
    # the report only, from runs already made
    python benchmarks/style_study.py --seeds 0 --report-only
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import REPO_ROOT, read_json, table, write_json  # noqa: E402
from quality import mean_std, paired_test  # noqa: E402

#: (metrics key, header) reported per style.
KEYS = [('seg/dice_lesion', 'Dice lesion %'), ('seg/dice', 'Dice %'),
        ('seg/recall', 'Lesion px recall %'),
        ('seg/precision', 'Lesion px precision %'),
        ('seg/false_lesion_rate', 'False lesion %'), ('cls/accuracy', 'Acc %')]
#: Metrics where lower is better (the gap to ``UPPER`` is measured down).
LOWER_IS_BETTER = frozenset({'seg/false_lesion_rate'})
#: Paired references, in order of preference (``--references``).
REFERENCES = ('supervised', 'supervised_matched')
#: Variants whose share of the gap to ``UPPER`` is reported (``--methods``).
METHODS = ('hermes', )
UPPER = 'fully_supervised'


def parse_args(argv=None) -> argparse.Namespace:
    from hermes_mm.datasets.synthetic import STYLES
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--styles', nargs='+', default=list(STYLES),
                   choices=list(STYLES), help='default: every style')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--ratio', type=float, default=0.125)
    p.add_argument('--variants', nargs='+',
                   default=['supervised', 'supervised_matched',
                            'fully_supervised', 'hermes'])
    p.add_argument('--variant-config', nargs='+', default=[],
                   metavar='NAME=CONFIG',
                   help='extra variants, passed on to quality.py')
    p.add_argument('--references', nargs='+', default=list(REFERENCES),
                   help='variants every other variant is paired against '
                   '(per seed)')
    p.add_argument('--methods', nargs='+', default=list(METHODS),
                   help='variants whose share of the reference -> '
                   f'{UPPER} gap is reported')
    p.add_argument('--iters', type=int, default=2400)
    p.add_argument('--val-points', type=int, default=4)
    p.add_argument('--out-dir', default=osp.join(REPO_ROOT, 'benchmarks',
                                                 'runs', 'styles'),
                   help='one sub-folder per style (quality.py --out-dir)')
    p.add_argument('--report', default=None,
                   help='report path (default OUT_DIR/style_study.md; '
                   'JSON next to it)')
    p.add_argument('--report-only', action='store_true',
                   help='only read the runs that exist')
    p.add_argument('--jobs', type=int, default=1,
                   help='runs at the same time within a style (quality.py '
                   '--jobs)')
    p.add_argument('--ledger', default=None,
                   help='quality.py --ledger LEDGER/<style>: finished-run '
                   'records to commit, so the study survives a new machine')
    p.add_argument('--dry-run', action='store_true',
                   help='run each style\'s quality.py --dry-run: it trains '
                   'nothing and prints, per run, "skip" (in the out dir or '
                   'the ledger) or the command still to run; no report')
    args = p.parse_args(argv)
    args.out_dir = osp.abspath(args.out_dir)
    if args.report is None:
        args.report = osp.join(args.out_dir, 'style_study.md')
    return args


def style_ledger(args, style: str) -> Optional[str]:
    """``style``'s folder of ``--ledger`` (None without a ledger)."""
    return osp.join(osp.abspath(args.ledger), style) if args.ledger else None


def quality_cmd(args, style: str) -> List[str]:
    """The ``quality.py`` command of one style (``args`` from
    :func:`parse_args`; ``args.report_only`` and ``args.dry_run`` are passed
    on)."""
    cmd = [sys.executable, osp.join(REPO_ROOT, 'benchmarks', 'quality.py'),
           '--style', style, '--iters', str(args.iters), '--val-points',
           str(args.val_points), '--ratios', str(args.ratio), '--seeds'] + [
               str(s) for s in args.seeds] + ['--variants'] + list(
                   args.variants) + ['--out-dir', osp.join(args.out_dir,
                                                           style)]
    if args.variant_config:
        cmd += ['--variant-config'] + list(args.variant_config)
    if args.jobs > 1 and not args.report_only:
        cmd += ['--jobs', str(args.jobs)]
    if args.ledger:
        cmd += ['--ledger', style_ledger(args, style)]
    if args.dry_run:  # quality.py then writes nothing, --report-only too
        cmd.append('--dry-run')
    return cmd + (['--report-only'] if args.report_only else [])


def per_seed(records: List[dict], variant: str,
             ratio: float) -> Dict[int, dict]:
    """Held-out metrics of ``variant``'s finished runs, by seed."""
    out = {}
    for r in records:
        if r['variant'] != variant or r.get('status') != 'ok':
            continue
        if not r.get('ratio_independent') and r['ratio'] != ratio:
            continue
        if 'heldout_metrics' in r:
            out[int(r['seed'])] = r['heldout_metrics']
    return out


def paired(ours: Dict[int, dict], ref: Dict[int, dict],
           key: str) -> Dict[str, Any]:
    """``ours - ref`` per shared seed: ``quality.paired_test`` (mean, std,
    n, two-sided paired t-test p) plus the seeds and how many are
    higher/lower."""
    seeds = sorted(s for s in set(ours) & set(ref)
                   if key in ours[s] and key in ref[s])
    a = [ours[s][key] for s in seeds]
    b = [ref[s][key] for s in seeds]
    diffs = [x - y for x, y in zip(a, b)]
    return dict(paired_test(a, b), seeds=seeds,
                higher=sum(d > 0 for d in diffs),
                lower=sum(d < 0 for d in diffs))


def gap_recovered(method: Dict[int, dict], lower: Dict[int, dict],
                  upper: Dict[int, dict], key: str) -> Optional[float]:
    """Share of the ``lower`` -> ``upper`` gap that ``method`` closes, from
    the means over the seeds all three have (None without such seeds or
    without a gap in the better direction; for :data:`LOWER_IS_BETTER`
    keys the upper bound is the lower value)."""
    seeds = sorted(s for s in set(method) & set(lower) & set(upper)
                   if all(key in d[s] for d in (method, lower, upper)))
    if not seeds:
        return None
    sign = -1.0 if key in LOWER_IS_BETTER else 1.0
    m, lo, hi = (sign * statistics.fmean(d[s][key] for s in seeds)
                 for d in (method, lower, upper))
    return (m - lo) / (hi - lo) if hi > lo else None


def gap_references(args) -> List[str]:
    """The ``--references`` that a gap to ``UPPER`` starts from."""
    return [ref for ref in args.references if ref != UPPER]


def style_summary(args, style: str) -> Optional[Dict[str, Any]]:
    path = osp.join(args.out_dir, style, 'results.json')
    if not osp.exists(path):
        return None
    records = read_json(path)['runs']
    runs = {v: per_seed(records, v, args.ratio) for v in args.variants}
    out: Dict[str, Any] = dict(variants={}, paired={}, gap={})
    for variant, by_seed in runs.items():
        out['variants'][variant] = {
            key: mean_std([m[key] for m in by_seed.values() if key in m])
            for key, _ in KEYS}
        out['variants'][variant]['seeds'] = sorted(by_seed)
    for ref in args.references:
        if not runs.get(ref):
            continue
        for variant, by_seed in runs.items():
            if variant != ref and variant not in REFERENCES and by_seed:
                out['paired'].setdefault(ref, {})[variant] = {
                    key: paired(by_seed, runs[ref], key) for key, _ in KEYS}
    for method in args.methods:
        if not (runs.get(method) and runs.get(UPPER)):
            continue
        for ref in gap_references(args):
            if ref != method and runs.get(ref):
                out['gap'].setdefault(method, {})[ref] = {
                    key: gap_recovered(runs[method], runs[ref], runs[UPPER],
                                       key) for key, _ in KEYS}
    return out


def fmt_ms(entry: Dict[str, Any]) -> str:
    if entry['mean'] is None:
        return '-'
    if entry['n'] == 1:
        return f'{entry["mean"]:.2f}'
    return f'{entry["mean"]:.2f} ± {entry["std"]:.2f}'


def fmt_paired(entry: Dict[str, Any]) -> str:
    if entry['mean'] is None:
        return '-'
    text = f'{entry["mean"]:+.2f}'
    if entry['n'] > 1:
        text += f' ± {entry["std"]:.2f}'
    text += f' ({entry["higher"]}↑/{entry["lower"]}↓'
    if entry['p'] is not None:
        text += f', p={entry["p"]:.2g}'
    return text + ')'


def markdown(args, summaries: Dict[str, Any], heldout: str) -> str:
    lines = [
        '# Per-style study', '',
        f'Label ratio {args.ratio}, {args.iters} iterations, seeds '
        f'{args.seeds}; held-out test set of each style (400 images, '
        'generator seed 1000); last checkpoint; Hermes-type models tested '
        f'with their EMA teacher. **Held-out style: `{heldout}`** (never '
        'used to choose a setting). `-`: not run.', '']
    rows = []
    for style, summ in summaries.items():
        name = f'**{style}** (held-out)' if style == heldout else style
        if summ is None:
            rows.append([name, '(no runs)'] + [''] * (len(KEYS) + 1))
            continue
        for variant, entry in summ['variants'].items():
            rows.append([name, variant] + [fmt_ms(entry[k]) for k, _ in KEYS]
                        + [len(entry['seeds'])])
    lines += [table(['style', 'variant'] + [h for _, h in KEYS] + ['seeds'],
                    rows), '']
    for ref in args.references:
        rows = []
        for style, summ in summaries.items():
            for variant, per_key in (summ or {}).get('paired', {}).get(
                    ref, {}).items():
                name = f'**{style}** (held-out)' if style == heldout \
                    else style
                rows.append([name, variant] +
                            [fmt_paired(per_key[k]) for k, _ in KEYS])
        if rows:
            lines += [f'Paired per seed, minus `{ref}` (mean ± std, seeds '
                      'higher/lower, paired t-test p):', '',
                      table(['style', 'variant'] +
                            [f'Δ {h}' for _, h in KEYS], rows), '']
    rows = []
    for method in args.methods:
        for ref in gap_references(args):
            for style, summ in summaries.items():
                gap = (summ or {}).get('gap', {}).get(method, {}).get(ref)
                if gap and any(v is not None for v in gap.values()):
                    name = f'**{style}** (held-out)' if style == heldout \
                        else style
                    rows.append([method, ref, name] + [
                        '-' if gap[k] is None else f'{100 * gap[k]:.0f}%'
                        for k, _ in KEYS])
    if rows:
        lines += [f'Share of the reference -> `{UPPER}` gap recovered per '
                  'style (from the means over the seeds all three share):',
                  '', table(['method', 'reference', 'style'] +
                            [h for _, h in KEYS], rows), '']
    rows = []
    for method in args.methods:
        for ref in gap_references(args):
            for group, styles in (('development styles',
                                   [s for s in summaries if s != heldout]),
                                  ('held-out style', [heldout])):
                gaps = [summaries[s]['gap'].get(method, {}).get(ref)
                        for s in styles if summaries.get(s)]
                values = {k: [g[k] for g in gaps
                              if g and g[k] is not None]
                          for k, _ in KEYS}
                if any(values.values()):
                    rows.append([method, ref, group] + [
                        f'{100 * statistics.fmean(v):.0f}% ({len(v)} '
                        f'style{"s" * (len(v) != 1)})' if v else '-'
                        for v in values.values()])
    if rows:
        lines += [f'Share of the reference -> `{UPPER}` gap recovered '
                  '(from per-style means), averaged over styles:', '',
                  table(['method', 'reference', 'styles'] +
                        [h for _, h in KEYS], rows), '']
    return '\n'.join(lines)


def has_records(args, style: str) -> bool:
    """Whether ``--report-only`` has anything to read for ``style``: its
    out dir, or its ``--ledger`` folder (a new machine has only the
    ledger)."""
    dirs = [osp.join(args.out_dir, style), style_ledger(args, style)]
    return any(d is not None and osp.isdir(d) for d in dirs)


def main(argv=None) -> int:
    args = parse_args(argv)
    from hermes_mm.datasets.synthetic import HELDOUT_STYLE
    t0 = time.perf_counter()
    failed = []
    for style in args.styles:
        cmd = quality_cmd(args, style)
        print('$ ' + ' '.join(cmd), flush=True)
        if args.report_only and not has_records(args, style):
            continue
        if subprocess.run(cmd, cwd=REPO_ROOT).returncode != 0:
            failed.append(style)
    if not args.dry_run:
        summaries = {s: style_summary(args, s) for s in args.styles}
        md = markdown(args, summaries, HELDOUT_STYLE)
        os.makedirs(osp.dirname(osp.abspath(args.report)), exist_ok=True)
        with open(args.report, 'w') as f:
            f.write(md + '\n')
        write_json(osp.splitext(args.report)[0] + '.json',
                   dict(benchmark='style_study', args=vars(args),
                        heldout_style=HELDOUT_STYLE, styles=summaries,
                        wall_time_s=time.perf_counter() - t0))
        print('\n' + md)
    if failed:
        print(f'quality.py failed for styles {failed}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
