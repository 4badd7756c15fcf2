"""Shared helpers of the research scripts that read a per-style study
(``benchmarks/style_study.py`` folders: ``OUT_DIR/<style>/runs/<variant>/
r<ratio>/seed<n>``, ``quality.run_dir``'s layout)."""
import argparse
import os.path as osp
import statistics
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..',
                            'benchmarks'))
from _common import environment, write_json  # noqa: E402
from quality import run_dir  # noqa: E402


def add_study_args(p: argparse.ArgumentParser) -> None:
    """The options naming a per-style study's runs."""
    p.add_argument('--out-dir', required=True,
                   help='the study folder (style_study.py --out-dir)')
    p.add_argument('--styles', nargs='+', required=True)
    p.add_argument('--variants', nargs='+', required=True)
    p.add_argument('--ratio', type=float, default=0.125)


def variant_dir(args, style: str, variant: str) -> str:
    """The folder holding a variant's ``seed<n>`` runs in the style's
    sub-folder: ``quality.run_dir``'s layout (no ratio level for
    ``fully_supervised``)."""
    style_args = argparse.Namespace(out_dir=osp.join(args.out_dir, style))
    return osp.dirname(run_dir(style_args, variant, args.ratio, 0))


def seed_runs(args) -> Iterator[Tuple[str, str, List[str]]]:
    """``(style, variant, run folders)`` for every ``--styles`` x
    ``--variants`` pair with a run folder for at least one of
    ``args.seeds``, the folders in seed order (seeds without one are left
    out)."""
    for style in args.styles:
        for variant in args.variants:
            runs = [osp.join(variant_dir(args, style, variant), f'seed{s}')
                    for s in args.seeds]
            runs = [run for run in runs if osp.isdir(run)]
            if runs:
                yield style, variant, runs


def mean_over_seeds(per_seed: Sequence[Dict[str, Optional[float]]],
                    skip: Sequence[str] = ()) -> Dict[str, object]:
    """Mean of every key over the seeds where it is not None (None where
    it never is; the union of the seeds' keys, ``skip`` left out), and
    ``seeds``: how many seeds there were."""
    keys = dict.fromkeys(k for s in per_seed for k in s if k not in skip)
    means: Dict[str, object] = {}
    for k in keys:
        values = [s[k] for s in per_seed if s.get(k) is not None]
        means[k] = statistics.fmean(values) if values else None
    means['seeds'] = len(per_seed)
    return means


def write_report(args, study: str, md: str, start: float,
                 **record) -> None:
    """Write the markdown report to ``args.out`` and the JSON record
    beside it (``study``, the arguments, ``record``'s entries, the
    environment and the wall time since ``start``, a
    ``time.perf_counter()`` value), and print the report."""
    with open(args.out, 'w') as f:
        f.write(md)
    write_json(osp.splitext(args.out)[0] + '.json',
               dict(study=study, args=vars(args), **record,
                    environment=environment(),
                    wall_time_s=time.perf_counter() - start))
    print(md)
