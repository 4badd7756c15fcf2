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


def add_dev_set_args(p: argparse.ArgumentParser) -> None:
    """The options of the scripts that run a checkpoint on its style's dev
    set (:func:`load_run_model`)."""
    import false_lesions

    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--num', type=int, default=false_lesions.DEV_NUM,
                   help='dev-set images generated per style')
    p.add_argument('--cache-dir', default=None,
                   help='where the dev sets are generated (default: '
                   "false_lesions.py's)")


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


def require_finished(run: str) -> None:
    """Stop unless ``quality.py`` finished ``run``: it writes
    ``heldout_metrics.json`` once training has ended, so an interrupted
    run's intermediate checkpoint is never measured."""
    if not osp.exists(osp.join(run, 'heldout_metrics.json')):
        raise SystemExit(f'{run}: not finished (no heldout_metrics.json)')


def last_checkpoint(run: str) -> str:
    """The path MMEngine's ``last_checkpoint`` file of ``run`` names."""
    with open(osp.join(run, 'last_checkpoint')) as f:
        return f.read().strip()


def load_run_model(run: str, num: int, cache_dir: Optional[str] = None):
    """``(model, cfg, config path, checkpoint path)`` of a run's last
    checkpoint: the model in eval mode on the CPU, and its config with the
    test set replaced by the dev set of the run's style
    (``false_lesions.load_config``: ``num`` images, generator seed
    ``false_lesions.DEV_SEED``)."""
    from mmengine.registry import init_default_scope

    import false_lesions
    import hermes_mm  # noqa: F401
    from hermes_mm.apis import HermesInferencer

    checkpoint = last_checkpoint(run)
    config = osp.join(run, 'config.py')
    init_default_scope('mmseg')
    cfg = false_lesions.load_config(false_lesions.parse_args(
        [config, checkpoint, '--num', str(num)] +
        (['--cache-dir', cache_dir] if cache_dir else [])))
    model = HermesInferencer(cfg, checkpoint, device='cpu',
                             show_progress=False).model.eval()
    return model, cfg, config, checkpoint
