"""Re-test quality-benchmark checkpoints with small lesion components
removed (``test_cfg.min_lesion_area``), area taken from the labelled data.

For every run of a ``benchmarks/quality.py`` output folder (same
``--out-dir/--ratios/--seeds/--variants`` arguments) this script

1. finds the smallest lesion among the run's *labelled* training images
   (union of the image's masks, as a fraction of the image area): that is
   the run's ``min_lesion_area``, so the rule uses only what the model was
   trained on, the same for every variant of a seed (same split);
2. tests the run's checkpoint again on the quality benchmark's held-out
   synthetic set with ``--cfg-options <segmentor>.test_cfg.min_lesion_area=A``
   (:func:`hermes_mm.models.utils.remove_small_components`);
3. writes ``<out-dir>/small_components/results.{json,md}``: the same tables
   and paired differences as ``quality.py``, on the filtered predictions,
   next to the unfiltered held-out numbers of ``quality.py``.

With ``--lesion-classes 0 1`` each run is also tested with
``test_cfg.lesion_classes`` (the filtered mask decides lesion vs lesion-free,
the classifier the class within; :func:`hermes_mm.models.utils
.mask_decides_lesion`), results in ``small_components[_x<S>]_mask_decides``.

Checkpoints are not changed; each run's filtered metrics are kept in
``RUN/heldout_small_components.json`` (reused unless ``--force``)::

    python research/small_components.py --iters 2400 --ratios 0.125 \\
        --seeds 0 1 2 3 4 5 6 7 --variants supervised hermes \\
        --out-dir benchmarks/runs/q2400
"""
import argparse
import os
import os.path as osp
import shlex
import sys
import time
from typing import Any, Dict

# the benchmark helpers (_common, quality) live in benchmarks/
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'benchmarks'))
import quality  # noqa: E402  (its runs, tables and paired differences)
from _common import environment, read_json, write_json  # noqa: E402


def labelled_min_lesion_area(config: str) -> Dict[str, Any]:
    """The smallest lesion area (fraction) of the labelled training images
    of ``config`` (:func:`hermes_mm.datasets.lesion_areas
    .labelled_lesion_areas`)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from hermes_mm.datasets.lesion_areas import (labelled_lesion_areas,
                                                 lesion_area_summary)

    init_default_scope('mmseg')
    summary = lesion_area_summary(labelled_lesion_areas(
        Config.fromfile(config)))
    return dict(min_lesion_area=summary['min'],
                labelled_lesions=summary['labelled_lesions'],
                median_lesion_area=summary['median'])


def test_options(config: str, area: float, lesion_classes=None) -> list:
    """``--cfg-options`` items setting ``min_lesion_area`` (and, when given,
    ``lesion_classes``) of ``config``'s predicting segmentor."""
    from mmengine.config import Config

    from hermes_mm.models.utils import test_cfg_key
    model = Config.fromfile(config).model
    options = [f'{test_cfg_key(model, "min_lesion_area")}={area!r}']
    if lesion_classes:
        classes = ','.join(str(c) for c in lesion_classes)
        options.append(f'{test_cfg_key(model, "lesion_classes")}=[{classes}]')
    return options


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--area-scale', type=float, default=1.0,
                   help='min_lesion_area = this x the smallest labelled '
                   'lesion (default 1; results go to small_components_x<S> '
                   'when not 1)')
    p.add_argument('--lesion-classes', type=int, nargs='+', default=None,
                   help='also set test_cfg.lesion_classes (image class '
                   'indices with a lesion; BUSI: 0 1) so the filtered mask '
                   'decides lesion vs lesion-free (results go to '
                   '<tag>_mask_decides)')
    p.add_argument('--force', action='store_true',
                   help='re-test runs that have filtered metrics already')
    own, rest = p.parse_known_args(argv)
    if not own.area_scale > 0:
        raise SystemExit(f'--area-scale must be > 0, got {own.area_scale}')
    tag = 'small_components' + (
        '' if own.area_scale == 1 else f'_x{own.area_scale:g}') + (
            '_mask_decides' if own.lesion_classes else '')
    args = quality.parse_args(rest)
    if not args.heldout_num:
        raise SystemExit('needs the synthetic held-out set '
                         '(--heldout-num > 0, no --data-root)')
    import hermes_mm  # noqa: F401
    start = time.perf_counter()
    records, filtered = [], []
    for variant, ratio, seed in quality.planned_runs(args):
        wd = quality.run_dir(args, variant, ratio, seed)
        path = osp.join(wd, 'run.json')
        if not osp.exists(path):
            raise SystemExit(f'{path} missing: run benchmarks/quality.py '
                             'with the same arguments first')
        record = read_json(path)
        if record.get('status') != 'ok':
            raise SystemExit(f'{path}: status {record.get("status")!r}')
        prior = labelled_min_lesion_area(record['config'])
        area = own.area_scale * prior['min_lesion_area']
        out = osp.join(wd, f'heldout_{tag}.json')
        cmd = [
            sys.executable, 'tools/test.py', record['config'],
            record['checkpoint'], '--work-dir',
            osp.join(wd, f'test_{tag}'), '--out-metrics', out
        ] + quality.heldout_options(args) + test_options(
            record['config'], area, own.lesion_classes)
        print(f'{variant} seed {seed}: min lesion area {area:.4f} = '
              f'{own.area_scale:g} x {prior["min_lesion_area"]:.4f} '
              f'({prior["labelled_lesions"]} labelled lesions)', flush=True)
        secs = 0.0
        if own.force or not osp.exists(out):
            if osp.exists(out):
                os.remove(out)
            code, secs = quality.run_cmd(
                cmd, osp.join(wd, f'{tag}.log'), args.timeout)
            if code != 0 or not osp.exists(out):
                raise SystemExit(f'test failed ({code}): '
                                 f'{shlex.join(cmd)}\n'
                                 + quality.tail(
                                     osp.join(wd, f'{tag}.log')))
        records.append(record)
        filtered.append(
            dict(record, heldout_metrics=read_json(out), small_components=dict(
                prior, area_scale=own.area_scale, min_lesion_area_used=area,
                lesion_classes=own.lesion_classes,
                test_cmd=shlex.join(cmd), test_wall_s=secs)))
    env = environment()
    result = dict(
        benchmark='small_components',
        environment=env,
        args=vars(args),
        runs=[r['small_components'] | dict(variant=r['variant'],
                                           seed=r['seed'],
                                           ratio=r['ratio'],
                                           heldout_metrics=r[
                                               'heldout_metrics'])
              for r in filtered],
        summary_unfiltered=quality.summarise(args, records),
        summary_filtered=quality.summarise(args, filtered),
        wall_time_s=time.perf_counter() - start)
    out_dir = osp.join(args.out_dir, tag)
    os.makedirs(out_dir, exist_ok=True)
    write_json(osp.join(out_dir, 'results.json'), result)
    areas = ', '.join(
        f'seed {r["seed"]}: {r["small_components"]["min_lesion_area"]:.4f}'
        for r in filtered if r['variant'] == args.variants[0])
    md = ('# Small lesion components removed (held-out set)\n\n'
          'Each run re-tested with `test_cfg.min_lesion_area` = '
          f'{own.area_scale:g} x the smallest lesion of its labelled '
          f'training images (fraction of the image; smallest: {areas})'
          + ('' if not own.lesion_classes else
             f'; `test_cfg.lesion_classes={own.lesion_classes}`: the '
             'filtered mask decides lesion vs lesion-free, the classifier '
             'the class within (AUC is the classifier\'s alone)') + '. '
          'Only the held-out tables apply; the split tables repeat the '
          'unfiltered quality.py numbers.\n\n'
          + quality.markdown(args, result['summary_filtered'], env))
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(md + '\n')
    print('\n' + md)
    print(f'\nwrote {out_dir}/results.json, results.md '
          f'({time.perf_counter() - start:.0f}s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
