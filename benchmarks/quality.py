"""Segmentation + classification quality of Hermes vs. baselines and ablations.

For every label ratio x seed x variant, trains with ``tools/train.py`` and
tests with ``tools/test.py --out-metrics`` (subprocesses, one work dir per
run), all variants with the same schedule, then writes:

* ``results.json``: every run (config, command lines, wall times, test
  metrics, status) and mean / std over seeds per ratio and variant;
* ``results.md``: mean +- std over seeds of lesion Dice, IoU, HD95 and
  image accuracy, macro F1, AUC (Hermes-type models are tested with their
  EMA teacher, ``predict_on='teacher'``);
* ``learning_curves_r<ratio>.png``: validation Dice vs. iteration
  (``teacher/seg/dice`` for teacher/student models, ``seg/dice`` otherwise)
  from each work dir's ``vis_data/scalars.json``;
* ``zones_<variant>_r<ratio>.png``: zone ratios (``zone.<seg|cls>.<zone>``)
  and pseudo-label precision (``pl.<seg|cls>.precision``) during training.

Test sets (synthetic data): the split's own test subset (41 of the 200
images: one image is 2.4 accuracy points) and, by default, a *held-out* set
of ``--heldout-num`` images (400) generated with another generator seed
(``--heldout-seed``), never seen in training or validation; every tested
checkpoint is evaluated on both and ``results.md`` has a table for each.
Runs finished before the held-out set was asked for get only their held-out
test on the next invocation (no retraining).

Data: by default the built-in synthetic BUSI-layout set (``configs/demo/*``,
generated once into ``--cache-dir``; label ratio and split seed are set on
every dataset of a generated config). With ``--data-root DIR`` (raw BUSI
layout) the ``configs/*busi*`` counterparts run unchanged, on split files
made by ``tools/make_split.py`` per ratio and seed and passed as
``--data-root/--split-file``.

Every run's config is generated (``<run>/config.py``: the chosen config with
seed, label ratio, data root and -- with ``--iters`` -- the schedule
rescaled), so the exact settings are on disk next to the results. Runs whose
metrics exist are skipped (resumable); an interrupted training resumes from
its last checkpoint. Work dirs are git-ignored and a new machine starts
without them: with ``--ledger DIR`` every finished run's record (metrics,
held-out metrics, commands, wall times, validation curve; a few kB) is also
written to ``DIR``, meant to be committed, and a run found there counts as
done, so a long study goes on where it stopped on another machine.

Examples::

    python benchmarks/quality.py --quick          # ~16 min on 2 CPU cores
    python benchmarks/quality.py                  # full synthetic study
    python benchmarks/quality.py --data-root data/BUSI --seeds 0 1 2
    python benchmarks/quality.py --dry-run        # print the commands only
    python benchmarks/quality.py --jobs 2         # two runs at a time

With ``--jobs N`` N runs train at the same time (one thread each here, one
``tools/train.py`` subprocess per run). Unless ``OMP_NUM_THREADS`` is set,
each subprocess gets ``cpu_count // N`` intra-op threads, so the runs do not
oversubscribe the CPU; on a GPU machine the N runs share the visible GPUs
(set ``CUDA_VISIBLE_DEVICES`` per invocation to split them instead).
"""
import argparse
import copy
import glob
import json
import math
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (REPO_ROOT, environment, read_json,  # noqa: E402
                     synthetic_test_set, table, write_json)

#: variant -> (synthetic config, BUSI config), paths relative to the repo.
VARIANTS: Dict[str, Tuple[str, str]] = {
    'supervised': ('configs/demo/supervised_synthetic.py',
                   'configs/supervised_busi.py'),
    'supervised_matched': (
        'configs/demo/baselines/supervised_matched_synthetic.py',
        'configs/baselines/supervised_matched_busi.py'),
    'supervised_ema': ('configs/demo/baselines/supervised_ema_synthetic.py',
                       'configs/baselines/supervised_ema_busi.py'),
    'fully_supervised': (
        'configs/demo/baselines/fully_supervised_synthetic.py',
        'configs/baselines/fully_supervised_busi.py'),
    'mean_teacher': ('configs/demo/baselines/mean_teacher_synthetic.py',
                     'configs/baselines/mean_teacher_busi.py'),
    'hermes_unlabelled_off': (
        'configs/demo/baselines/hermes_unlabelled_off_synthetic.py',
        'configs/baselines/hermes_unlabelled_off_busi.py'),
    'hermes': ('configs/demo/hermes_synthetic.py', 'configs/hermes_busi.py'),
    'hermes_guarded': (
        'configs/demo/variants/hermes_synthetic_guarded.py',
        'configs/variants/hermes_busi_guarded.py'),
    'hermes_adaptive_threshold': (
        'configs/demo/variants/hermes_synthetic_adaptive_threshold.py',
        'configs/variants/hermes_busi_adaptive_threshold.py'),
    'hermes_class_dice': (
        'configs/demo/variants/hermes_synthetic_class_dice.py',
        'configs/variants/hermes_busi_class_dice.py'),
    'hermes_safety_net': (
        'configs/demo/variants/hermes_synthetic_safety_net.py',
        'configs/variants/hermes_busi_safety_net.py'),
    'hermes_separate_forward': (
        'configs/demo/variants/hermes_synthetic_separate_forward.py',
        'configs/variants/hermes_busi_separate_forward.py'),
    'hermes_unmixed_view': (
        'configs/demo/variants/hermes_synthetic_unmixed_view.py',
        'configs/variants/hermes_busi_unmixed_view.py'),
    'no_itas': ('configs/demo/ablations/hermes_synthetic_no_itas.py',
                'configs/ablations/hermes_busi_no_itas.py'),
    'single_threshold': (
        'configs/demo/ablations/hermes_synthetic_single_threshold.py',
        'configs/ablations/hermes_busi_single_threshold.py'),
    'no_contrast': ('configs/demo/ablations/hermes_synthetic_no_contrast.py',
                    'configs/ablations/hermes_busi_no_contrast.py'),
    'no_pix_contrast': (
        'configs/demo/ablations/hermes_synthetic_no_pix_contrast.py',
        'configs/ablations/hermes_busi_no_pix_contrast.py'),
    'no_consistency': (
        'configs/demo/ablations/hermes_synthetic_no_consistency.py',
        'configs/ablations/hermes_busi_no_consistency.py'),
}
#: The fully-supervised upper bound trains on every train image whatever
#: the ratio: one run per seed serves every ratio.
RATIO_INDEPENDENT = ('fully_supervised', )
#: Test metrics in the table: (key in the --out-metrics JSON, header).
METRICS = [('seg/dice', 'Dice %'), ('seg/iou', 'IoU %'),
           ('seg/hd95', 'HD95 px'), ('seg/dice_lesion', 'Dice lesion %'),
           ('seg/false_lesion_rate', 'False lesion %'),
           ('cls/accuracy', 'Acc %'),
           ('cls/f1', 'F1 %'), ('cls/auc', 'AUC %')]
ZONE_KEYS = [f'zone.{t}.{z}' for t in ('seg', 'cls')
             for z in ('reliable', 'ambiguous', 'unreliable')]
PRECISION_KEYS = ['pl.seg.precision', 'pl.cls.precision']
#: What --quick runs (explicit flags still win).
QUICK = dict(ratios=[0.125], seeds=[0],
             variants=['supervised', 'fully_supervised', 'mean_teacher',
                       'hermes'],
             iters=300, val_points=3)
#: Baseline of the paired per-seed differences in results.md.
REFERENCE = 'supervised'
#: Held-out synthetic test set: size and generator seed (the training set is
#: generated with the configs' ``generator_seed``, 0).
HELDOUT_NUM = 400
HELDOUT_SEED = 1000
FULL = dict(ratios=[0.125, 0.25], seeds=[0, 1, 2],
            variants=list(VARIANTS), iters=None, val_points=None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='--quick = --ratios 0.125 --seeds 0 --variants supervised '
        'fully_supervised mean_teacher hermes --iters 300 --val-points 3 '
        '(each can still be overridden).')
    p.add_argument('--quick', action='store_true',
                   help='short schedule, 1 seed, ratio 0.125, 4 variants')
    p.add_argument('--data-root', help='raw BUSI layout; default: the '
                   'synthetic set')
    p.add_argument('--style', default='default',
                   help='synthetic data style (hermes_mm.datasets.'
                   'synthetic.STYLES; `python tools/make_synthetic_busi.py '
                   '--list-styles`); the training and held-out sets both '
                   'use it')
    p.add_argument('--ratios', type=float, nargs='+',
                   help=f'label ratios (default {FULL["ratios"]})')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='seeds: randomness.seed and split seed (default '
                   f'{FULL["seeds"]})')
    p.add_argument('--variants', nargs='+', metavar='VARIANT',
                   help=f'default: all built-in ones ({", ".join(VARIANTS)}'
                   ') ; a name given with --variant-config also counts')
    p.add_argument('--variant-config', nargs='+', default=[],
                   metavar='NAME=CONFIG',
                   help='extra variants for this invocation: NAME runs '
                   'CONFIG (a path; a synthetic-data config, or a BUSI one '
                   'with --data-root), e.g. an ablation of your own')
    p.add_argument('--iters', type=int,
                   help='schedule length for every variant; LR schedule, '
                   'ramp-ups and warm-ups are rescaled proportionally '
                   '(default: the configs\' own, 600 synthetic / 20k BUSI)')
    p.add_argument('--val-points', type=int,
                   help='validations per run with --iters (learning-curve '
                   'points; default: the config\'s val_interval)')
    p.add_argument('--checkpoint', choices=['last', 'best'], default='last',
                   help='checkpoint to test: the final one, or the best on '
                   'the validation set (teacher/seg/dice or seg/dice)')
    p.add_argument('--smooth', type=int, default=10,
                   help='zone/precision plots: trailing mean over this many '
                   'logged values (1: raw)')
    p.add_argument('--out-dir', help='default benchmarks/runs/quality_'
                   '<synthetic|busi>[_quick]')
    p.add_argument('--cache-dir', default=osp.join(REPO_ROOT, 'benchmarks',
                                                   'runs', 'cache'),
                   help='where the synthetic set is generated')
    p.add_argument('--heldout-num', type=int, default=HELDOUT_NUM,
                   help='synthetic data: also test every run on this many '
                   'freshly generated images (0: only the split\'s test '
                   f'subset; default {HELDOUT_NUM})')
    p.add_argument('--heldout-seed', type=int, default=HELDOUT_SEED,
                   help='generator seed of the held-out set; must differ '
                   f'from the training set\'s (default {HELDOUT_SEED})')
    p.add_argument('--num-workers', type=int,
                   help='train data-loader workers (default: config)')
    p.add_argument('--timeout', type=float, default=None,
                   help='seconds per train or test subprocess')
    p.add_argument('--jobs', type=int, default=1,
                   help='runs at the same time (default 1); each gets '
                   'cpu_count // jobs intra-op threads unless '
                   'OMP_NUM_THREADS is set')
    p.add_argument('--dry-run', action='store_true',
                   help='write configs and print commands, run nothing')
    p.add_argument('--report-only', action='store_true',
                   help='only aggregate existing runs (table, plots)')
    p.add_argument('--ledger', default=None,
                   help='folder of finished-run records to keep in git '
                   '(one small JSON per run: the run record, its test '
                   'metrics and validation curve, no checkpoint). Every '
                   'finished run is written there; a run with a ledger '
                   'record counts as done even when its work dir is gone, '
                   'so a study survives a new machine')
    args = p.parse_args(argv)
    args.variant_configs = parse_variant_configs(p, args.variant_config)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, copy.deepcopy(value))
    known = list(VARIANTS) + list(args.variant_configs)
    unknown = [v for v in args.variants if v not in known]
    if unknown:
        p.error(f'--variants: unknown {unknown}; choose from {known}')
    if args.data_root is not None:
        args.data_root = osp.abspath(args.data_root)
    if args.out_dir is None:
        kind = 'busi' if args.data_root else 'synthetic' + (
            '' if args.style == 'default' else f'_{args.style}')
        args.out_dir = osp.join(REPO_ROOT, 'benchmarks', 'runs',
                                f'quality_{kind}' +
                                ('_quick' if args.quick else ''))
    args.out_dir = osp.abspath(args.out_dir)
    args.cache_dir = osp.abspath(args.cache_dir)
    if args.ledger is not None:
        args.ledger = osp.abspath(args.ledger)
    from hermes_mm.datasets.synthetic import STYLES
    if args.style not in STYLES:
        p.error(f'--style must be one of {sorted(STYLES)}, got '
                f'{args.style!r}')
    if args.heldout_num < 0:
        p.error(f'--heldout-num must be >= 0, got {args.heldout_num}')
    if args.jobs < 1:
        p.error(f'--jobs must be >= 1, got {args.jobs}')
    if args.data_root is not None:
        # Real data has no generator: its test subset is the only test set.
        args.heldout_num = 0
    return args


def parse_variant_configs(p: argparse.ArgumentParser,
                          items: List[str]) -> Dict[str, str]:
    """``['NAME=CONFIG', ...]`` -> ``{NAME: absolute CONFIG path}``."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            p.error(f'--variant-config expects NAME=CONFIG, got {item!r}')
        if name in VARIANTS or name in out:
            p.error(f'--variant-config: the name {name!r} is already '
                    'taken; choose another')
        if not osp.isfile(path):
            p.error(f'--variant-config {item!r}: no such config file '
                    f'{path!r}')
        out[name] = osp.abspath(path)
    return out


def variant_source(args, variant: str) -> str:
    """Config path of ``variant`` (relative to the repo for built-in
    variants, absolute for ``--variant-config`` ones)."""
    extra = getattr(args, 'variant_configs', {})
    if variant in extra:
        return extra[variant]
    return VARIANTS[variant][0 if args.data_root is None else 1]


# ----------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------
def ratio_tag(ratio: float) -> str:
    return f'{ratio:g}'


def run_dir(args, variant: str, ratio: float, seed: int) -> str:
    if variant in RATIO_INDEPENDENT:
        return osp.join(args.out_dir, 'runs', variant, f'seed{seed}')
    return osp.join(args.out_dir, 'runs', variant, f'r{ratio_tag(ratio)}',
                    f'seed{seed}')


def ledger_path(args, variant: str, ratio: float,
                seed: int) -> Optional[str]:
    """Where ``--ledger`` keeps a run's record (None without a ledger):
    the run dir's path below ``OUT_DIR/runs``, as one JSON file."""
    if args.ledger is None:
        return None
    rel = osp.relpath(run_dir(args, variant, ratio, seed),
                      osp.join(args.out_dir, 'runs'))
    return osp.join(args.ledger, rel + '.json')


def check_settings(args, record: Dict[str, Any], where: str) -> None:
    """Refuse a finished run made with another schedule or checkpoint
    rule than this invocation asks for."""
    if ('requested_iters' in record and
            record['requested_iters'] != args.iters) or (
                args.iters and record.get('max_iters') != args.iters) or \
            record.get('checkpoint_rule', args.checkpoint) != \
            args.checkpoint:
        raise SystemExit(
            f'{where} holds a run with --iters '
            f'{record.get("requested_iters", record.get("max_iters"))} / '
            f'--checkpoint '
            f'{record.get("checkpoint_rule")}; use another --out-dir '
            '(or --ledger) for other settings')


def write_ledger(args, record: Dict[str, Any]) -> None:
    """Keep a finished run in ``--ledger``: its record plus its validation
    curve (``val_curve``: [[iteration, value], ...] of ``val_key``), so
    the tables and learning curves can be rebuilt without the work dir."""
    path = ledger_path(args, record['variant'], record['ratio'],
                       record['seed'])
    if path is None or record.get('status') != 'ok':
        return
    entry = dict(record)
    rows = read_scalars(record['work_dir'])
    if rows:
        entry['val_curve'] = [list(p) for p in zip(
            *curve(rows, val_key(record)))]
    write_json(path, entry)


def read_ledger(args, variant: str, ratio: float,
                seed: int) -> Optional[Dict[str, Any]]:
    """A finished run's ledger record, or None."""
    path = ledger_path(args, variant, ratio, seed)
    if path is None or not osp.exists(path):
        return None
    record = read_json(path)
    if record.get('status') != 'ok':
        return None
    check_settings(args, record, path)
    facts = heldout_facts(args)
    if args.heldout_num and record.get('heldout') != facts:
        raise SystemExit(
            f'{path} was tested on the held-out set {record.get("heldout")}, '
            f'not {facts}, and holds no checkpoint to test again; use '
            'another --ledger or the same --heldout-num/--heldout-seed')
    return record


def iter_datasets(cfg):
    from hermes_mm.utils import iter_loader_datasets
    for _, ds in iter_loader_datasets(cfg):
        yield ds


#: the loss ramp-ups (``RampSchedule``) of a Hermes-family model config
RAMP_KEYS = ('unsup_weight', 'contrast_weight', 'consistency_weight')


def rescale_schedule(cfg, iters: int, val_points: Optional[int]) -> dict:
    """Shorten/lengthen the schedule to ``iters``; everything measured in
    iterations (LR scheduler bounds, loss ramp-ups, threshold warm-ups)
    scales by ``iters / max_iters``. Returns what changed."""
    old = int(cfg.train_cfg.max_iters)
    factor = iters / old

    def scale(x):
        return int(round(x * factor))

    cfg.train_cfg.max_iters = iters
    if 'max_iters' in cfg:
        cfg.max_iters = iters
    for sched in cfg.get('param_scheduler') or []:
        if sched.get('by_epoch', True) is False:
            for key in ('begin', 'end'):
                if key in sched:
                    sched[key] = min(scale(sched[key]), iters)
            if sched.get('end', iters) <= sched.get('begin', 0):
                raise SystemExit(
                    f'--iters {iters} is too short for this config\'s '
                    f'{sched.get("type")} LR scheduler: it spans '
                    f'[{sched.get("begin", 0)}, {sched.get("end")}) once '
                    f'rescaled from {old} iterations, an empty range; use '
                    'more iterations')
    model = cfg.model
    # Every ramp and threshold schedule the model config has, whatever its
    # type: subclasses of HermesSegmentor (research/*/configs) inherit them
    # (a type-name check once skipped them: amendment 32 of
    # benchmarks/results/PREREGISTRATION_styles.md).
    for key in RAMP_KEYS:
        ramp = model.get(key)
        if ramp:
            for sub in ('start', 'length'):
                if sub in ramp:
                    ramp[sub] = max(scale(ramp[sub]),
                                    1 if sub == 'length' else 0)
    labeler = model.get('pseudo_labeler') or {}
    for key in ('seg_threshold', 'cls_threshold'):
        policy = labeler.get(key) or {}
        for sub in ('warmup_iters', 'ramp_iters'):
            if sub in policy:
                policy[sub] = scale(policy[sub])
    for hook in cfg.get('custom_hooks') or []:
        for sub in ('precision_window', 'no_pair_warning_iters',
                    'begin_iter'):
            if hook.get(sub):
                hook[sub] = max(scale(hook[sub]), 1)
    points = val_points or max(1, old // int(cfg.train_cfg.val_interval))
    cfg.train_cfg.val_interval = max(1, iters // points)
    hooks = cfg.default_hooks
    hooks.checkpoint.interval = iters
    hooks.checkpoint.max_keep_ckpts = 1
    hooks.logger.interval = max(1, min(int(hooks.logger.interval),
                                       iters // 20 or 1))
    return dict(factor=factor, max_iters=iters,
                val_interval=cfg.train_cfg.val_interval,
                log_interval=hooks.logger.interval)


def is_teacher_student(cfg) -> bool:
    """Whether ``cfg.model`` is :class:`HermesSegmentor` or a subclass
    (e.g. a ``research/*/configs`` variant), resolved through the registry
    after the config's ``custom_imports`` (which need the repository root
    on ``PYTHONPATH`` for ``research.*`` modules)."""
    from mmengine.utils import import_modules_from_strings

    from hermes_mm.models.segmentors import HermesSegmentor
    from hermes_mm.registry import MODELS
    imports = cfg.get('custom_imports')
    if imports:
        try:
            import_modules_from_strings(**imports)
        except ImportError as err:
            raise SystemExit(
                f'custom_imports {imports.get("imports")} of the config '
                f'failed ({err}); research configs need the repository '
                'root on the path: PYTHONPATH=. python benchmarks/...')
    cls = MODELS.get(cfg.model.get('type'))
    return isinstance(cls, type) and issubclass(cls, HermesSegmentor)


def make_config(args, variant: str, ratio: float, seed: int,
                out_path: str, split_file: Optional[str] = None) -> dict:
    """Write the run's config; return facts about it."""
    from mmengine.config import Config

    from hermes_mm.utils import rewrite_datasets
    synthetic = args.data_root is None
    src = variant_source(args, variant)
    cfg = Config.fromfile(osp.join(REPO_ROOT, src))
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    facts: Dict[str, Any] = dict(source_config=src)
    if synthetic:
        root = osp.join(args.cache_dir, 'synthetic_busi' + (
            '' if args.style == 'default' else f'_{args.style}'))
        touched = 0
        seeds = set()  # generator seeds of the training/val/test data
        for ds in iter_datasets(cfg):
            if 'labeled_ratio' in ds or ds.get('type') == \
                    'SyntheticBUSIDataset':
                ds['data_root'] = root
                if args.style != 'default':
                    ds['style'] = args.style
                ds['labeled_ratio'] = ratio
                ds['split_seed'] = seed
                seeds.add(int(ds.get('generator_seed', 0)))
                touched += 1
        if not touched:
            raise RuntimeError(f'{src}: no SyntheticBUSIDataset to set the '
                               'label ratio on')
        if args.heldout_num and args.heldout_seed in seeds:
            raise SystemExit(
                f'--heldout-seed {args.heldout_seed} is the generator seed '
                f'of {src}\'s training data ({sorted(seeds)}): the '
                'held-out set would repeat training images; pick another '
                'seed')
        # Top-level helper variables too, so the dumped file reads true.
        cfg.data_root = root
        if isinstance(cfg.get('synthetic'), dict):
            cfg.synthetic.update(labeled_ratio=ratio, split_seed=seed)
        facts.update(data_root=root, synthetic_datasets=touched,
                     style=args.style)
    else:
        # Also passed as --data-root/--split-file; written here too so the
        # config on disk is what ran.
        rewrite_datasets(cfg, data_root=args.data_root, split_file=split_file)
        cfg.data_root = args.data_root
        if 'split_file' in cfg:
            cfg.split_file = split_file
        facts.update(data_root=args.data_root, split_file=split_file)
    if is_teacher_student(cfg):
        cfg.model.predict_on = 'teacher'
        facts['teacher_student'] = True
    else:
        facts['teacher_student'] = False
    if args.iters:
        facts['schedule'] = rescale_schedule(cfg, args.iters, args.val_points)
    facts['max_iters'] = int(cfg.train_cfg.max_iters)
    if args.num_workers is not None:
        cfg.train_dataloader.num_workers = args.num_workers
        if args.num_workers == 0:
            cfg.train_dataloader.persistent_workers = False
    os.makedirs(osp.dirname(out_path), exist_ok=True)
    cfg.dump(out_path)
    return facts


def make_split_file(args, ratio: float, seed: int) -> str:
    """BUSI only: tools/make_split.py once per ratio and seed."""
    out = osp.join(args.out_dir, 'splits',
                   f'split_{ratio_tag(ratio)}_seed{seed}.json')
    if not osp.exists(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
        cmd = [sys.executable, 'tools/make_split.py', args.data_root,
               '--labeled-ratio', str(ratio), '--seed', str(seed),
               '--out', out]
        print('  $ ' + shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    return out


# ----------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------
def subprocess_env(args) -> Dict[str, str]:
    """Environment of the train/test subprocesses: with ``--jobs`` N > 1
    and no ``OMP_NUM_THREADS`` of the caller's, ``cpu_count // N`` (at
    least 1) intra-op threads each."""
    env = dict(os.environ)
    if args.jobs > 1 and 'OMP_NUM_THREADS' not in env:
        threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def run_cmd(cmd: List[str], log_path: str, timeout: Optional[float],
            env: Optional[Dict[str, str]] = None):
    start = time.perf_counter()
    with open(log_path, 'a') as log:
        log.write(f'\n$ {shlex.join(cmd)}\n')
        log.flush()
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout,
                                  env=env)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = 'timeout'
    return code, time.perf_counter() - start


def tail(path: str, n: int = 25) -> str:
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


def find_checkpoint(work_dir: str, which: str,
                    max_iters: int) -> Optional[str]:
    if which == 'best':
        best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')),
                      key=osp.getmtime)
        if best:
            return best[-1]
    final = osp.join(work_dir, f'iter_{max_iters}.pth')
    return final if osp.exists(final) else None


def heldout_options(args) -> List[str]:
    """``tools/test.py`` options pointing the test set at the held-out
    images: every generated image (``subset=None``), generated on first
    use into ``--cache-dir``."""
    overrides = synthetic_test_set(args.cache_dir, 'heldout',
                                   args.heldout_num, args.heldout_seed,
                                   args.style)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in overrides.items()]


def heldout_facts(args) -> Dict[str, int]:
    """What a record's ``heldout`` entry says of the held-out set it was
    tested on (compared before a record is reused)."""
    return dict(num=args.heldout_num, generator_seed=args.heldout_seed)


def heldout_test(args, record: Dict[str, Any], log_path: str) -> None:
    """Test ``record``'s checkpoint on the held-out set (in place)."""
    if not args.heldout_num or record.get('status') != 'ok':
        return
    facts = heldout_facts(args)
    if record.get('heldout') == facts and 'heldout_metrics' in record:
        return
    wd = record['work_dir']
    out = osp.join(wd, 'heldout_metrics.json')
    cmd = [sys.executable, 'tools/test.py', record['config'],
           record['checkpoint'], '--work-dir', osp.join(wd, 'test_heldout'),
           '--out-metrics', out] + heldout_options(args)
    print(f'  held-out test: {shlex.join(cmd)}', flush=True)
    if args.dry_run:
        return
    if osp.exists(out):
        os.remove(out)
    code, secs = run_cmd(cmd, log_path, args.timeout, subprocess_env(args))
    record.update(heldout=facts, heldout_test_cmd=shlex.join(cmd),
                  heldout_test_wall_s=secs)
    record.pop('heldout_metrics', None)
    if code != 0 or not osp.exists(out):
        record.update(status=f'held-out test failed ({code})',
                      log_tail=tail(log_path))
    else:
        record['heldout_metrics'] = read_json(out)


#: Serialises what ``--jobs`` runs share before they train: config parsing
#: and the BUSI split files (two variants of one ratio and seed write the
#: same split file).
_PREPARE_LOCK = threading.Lock()


def one_run(args, variant: str, ratio: float, seed: int) -> dict:
    wd = run_dir(args, variant, ratio, seed)
    record_path = osp.join(wd, 'run.json')
    metrics_path = osp.join(wd, 'metrics.json')
    if osp.exists(record_path) and osp.exists(metrics_path):
        record = read_json(record_path)
        check_settings(args, record, wd)
        if record.get('status') == 'ok':
            print(f'  skip (done): {wd}', flush=True)
            heldout_test(args, record, osp.join(wd, 'benchmark.log'))
            if not args.dry_run:
                write_json(record_path, record)
                write_ledger(args, record)
            return record
    elif not osp.exists(osp.join(wd, 'last_checkpoint')):
        # No work dir (a new machine), no training to resume: the ledger's
        # record is the run.
        kept = read_ledger(args, variant, ratio, seed)
        if kept is not None:
            print(f'  skip (in the ledger): {wd}', flush=True)
            return kept
    os.makedirs(wd, exist_ok=True)
    cfg_path = osp.join(wd, 'config.py')
    data_args: List[str] = []
    split = None
    with _PREPARE_LOCK:
        if args.data_root:
            split = make_split_file(args, ratio, seed)
            data_args = ['--data-root', args.data_root, '--split-file',
                         split]
        facts = make_config(args, variant, ratio, seed, cfg_path, split)
    train_cmd = [sys.executable, 'tools/train.py', cfg_path, '--work-dir',
                 wd] + data_args
    record: Dict[str, Any] = dict(
        variant=variant, ratio=ratio, seed=seed, work_dir=wd,
        config=cfg_path, checkpoint_rule=args.checkpoint,
        requested_iters=args.iters, **facts)
    record['ratio_independent'] = variant in RATIO_INDEPENDENT
    prev = read_json(record_path) if osp.exists(record_path) else {}
    ckpt = find_checkpoint(wd, 'last', facts['max_iters'])
    log_path = osp.join(wd, 'benchmark.log')
    if ckpt is None:
        if osp.exists(osp.join(wd, 'last_checkpoint')):
            train_cmd.append('--resume')
        record['train_cmd'] = shlex.join(train_cmd)
        print(f'  train: {shlex.join(train_cmd)}', flush=True)
        if args.dry_run:
            return dict(record, status='dry-run')
        code, secs = run_cmd(train_cmd, log_path, args.timeout,
                             subprocess_env(args))
        earlier = prev.get('train_wall_s') if '--resume' in train_cmd \
            else None
        record['train_wall_s'] = secs + (earlier or 0.0)
        if code != 0:
            record.update(status=f'train failed ({code})',
                          log_tail=tail(log_path))
            write_json(record_path, record)
            print(f'  FAILED: see {log_path}\n{record["log_tail"]}',
                  flush=True)
            return record
    else:
        record['train_wall_s'] = prev.get('train_wall_s')
        record['train_cmd'] = prev.get('train_cmd', shlex.join(train_cmd))
    ckpt = find_checkpoint(wd, args.checkpoint, facts['max_iters'])
    if ckpt is None:
        record.update(status='no checkpoint', log_tail=tail(log_path))
        write_json(record_path, record)
        return record
    test_cmd = [sys.executable, 'tools/test.py', cfg_path, ckpt,
                '--work-dir', osp.join(wd, 'test'), '--out-metrics',
                metrics_path] + data_args
    record['test_cmd'] = shlex.join(test_cmd)
    record['checkpoint'] = ckpt
    print(f'  test:  {shlex.join(test_cmd)}', flush=True)
    if args.dry_run:
        return dict(record, status='dry-run')
    code, secs = run_cmd(test_cmd, log_path, args.timeout,
                         subprocess_env(args))
    record['test_wall_s'] = secs
    if code != 0 or not osp.exists(metrics_path):
        record.update(status=f'test failed ({code})', log_tail=tail(log_path))
    else:
        record.update(status='ok', metrics=read_json(metrics_path))
        heldout_test(args, record, log_path)
    write_json(record_path, record)
    write_ledger(args, record)
    return record


# ----------------------------------------------------------------------
# aggregation, tables, plots
# ----------------------------------------------------------------------
def read_scalars(work_dir: str) -> List[dict]:
    """Every scalars.json line of a work dir (resumed runs: all sessions),
    ordered by step."""
    rows = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    rows.sort(key=lambda r: r.get('step', r.get('iter', 0)))
    return rows


def curve(rows: List[dict], key: str) -> Tuple[List[int], List[float]]:
    pts = {}
    for r in rows:
        if key in r:
            pts[int(r.get('step', r.get('iter', 0)))] = float(r[key])
    steps = sorted(pts)
    return steps, [pts[s] for s in steps]


def smooth(values: List[float], window: int) -> List[float]:
    """Trailing moving average over up to ``window`` points (per-iteration
    zone ratios over a few unlabelled images are very noisy)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def val_key(record: dict) -> str:
    return 'teacher/seg/dice' if record.get('teacher_student') else \
        'seg/dice'


def mean_std(values: List[float]) -> Dict[str, Any]:
    values = [v for v in values
              if v is not None and not (isinstance(v, float) and
                                        math.isnan(v))]
    if not values:
        return dict(mean=None, std=None, n=0)
    return dict(mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                n=len(values))


def finished_runs(records: List[dict], variant: str,
                  ratio: float) -> List[dict]:
    """``variant``'s successful runs that count for ``ratio`` (a
    ratio-independent variant's runs count for every ratio)."""
    return [
        r for r in records if r['variant'] == variant and
        r.get('status') == 'ok' and (r['ratio_independent'] or
                                     r['ratio'] == ratio)
    ]


def summarise(args, records: List[dict]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {}
    for ratio in args.ratios:
        per_ratio = summary.setdefault(ratio_tag(ratio), {})
        for variant in args.variants:
            runs = finished_runs(records, variant, ratio)
            entry = {key: mean_std([r['metrics'].get(key) for r in runs])
                     for key, _ in METRICS}
            held = [r['heldout_metrics'] for r in runs
                    if 'heldout_metrics' in r]
            if held:
                entry['heldout'] = {
                    key: mean_std([m.get(key) for m in held])
                    for key, _ in METRICS}
                entry['heldout']['n_runs'] = len(held)
            entry['seeds'] = sorted(r['seed'] for r in runs)
            entry['train_wall_s'] = mean_std(
                [r.get('train_wall_s') for r in runs])
            per_ratio[variant] = entry
        if REFERENCE in args.variants:
            for variant in args.variants:
                if variant != REFERENCE:
                    per_ratio[variant]['paired'] = paired_differences(
                        records, variant, ratio)
    return summary


def paired_test(ours: List[float], ref: List[float]) -> Dict[str, Any]:
    """Mean, std and number of the differences ``ours - ref`` and their
    two-sided paired t-test p-value ``p`` (``scipy.stats.ttest_rel``; None
    below 2 pairs or when every difference is the same)."""
    from scipy.stats import ttest_rel

    stats = mean_std([x - y for x, y in zip(ours, ref)])
    p = None
    if stats['n'] > 1 and stats['std'] > 0:
        p = float(ttest_rel(ours, ref).pvalue)
    return dict(stats, p=p)


def paired_differences(records: List[dict], variant: str,
                       ratio: float) -> Dict[str, Any]:
    """``variant`` minus :data:`REFERENCE` per seed (same seed = same
    split and labelled images), per test set: :func:`paired_test` of each
    metric."""
    ours, ref = ({r['seed']: r
                  for r in finished_runs(records, name, ratio)}
                 for name in (variant, REFERENCE))
    out: Dict[str, Any] = {}
    for source in ('metrics', 'heldout_metrics'):
        seeds = sorted(s for s in ours if s in ref and source in ours[s] and
                       source in ref[s])
        if not seeds:
            continue
        per_key = {}
        for key, _ in METRICS:
            a = [ours[s][source].get(key) for s in seeds]
            b = [ref[s][source].get(key) for s in seeds]
            if any(v is None for v in a + b):
                continue
            per_key[key] = paired_test(a, b)
        out[source] = dict(per_key, seeds=seeds)
    return out


def markdown(args, summary: Dict[str, Any], env: dict) -> str:
    lines = [
        '# Quality benchmark',
        '',
        'Data: ' + (f'BUSI at {args.data_root}' if args.data_root else
                    'synthetic BUSI-layout set (configs/demo)') + '; '
        f'schedule: {args.iters or "config default"} iterations; '
        f'checkpoint tested: {args.checkpoint}; teacher/student models '
        'tested with the teacher. Mean ± std over seeds (the mean alone '
        'for one seed); fully_supervised uses every train image, so one '
        'run per seed serves every ratio.',
        f'Machine: {env["cpu"]} x{env["cpu_count"]}, torch {env["torch"]} '
        f'({env["torch_threads"]} threads)' +
        (f', {env["gpu"]}' if env.get('gpu') else '') + '.',
        '',
    ]
    for ratio, per in summary.items():
        rows, held_rows = [], []
        for variant, entry in per.items():
            wall = entry['train_wall_s']['mean']
            rows.append([variant] + metric_cells(entry) + [
                len(entry['seeds']),
                '-' if wall is None else f'{wall / 60:.1f}'
            ])
            if 'heldout' in entry:
                held_rows.append([variant] + metric_cells(entry['heldout']) +
                                 [entry['heldout']['n_runs']])
        lines += [f'## Label ratio {ratio}', '',
                  'Test subset of the split' +
                  ('' if args.data_root else
                   ' (20% of the generated images)') + ':', '',
                  table(['variant'] + [h for _, h in METRICS] +
                        ['seeds', 'train min'], rows), '']
        if held_rows:
            lines += [
                f'Held-out set: {args.heldout_num} images generated with '
                f'generator seed {args.heldout_seed}, never trained or '
                'validated on (same checkpoints):', '',
                table(['variant'] + [h for _, h in METRICS] + ['seeds'],
                      held_rows), ''
            ]
        for source, title in (('metrics', 'split test subset'),
                              ('heldout_metrics', 'held-out set')):
            rows = [[variant] + paired_cells(entry['paired'][source]) +
                    [len(entry['paired'][source]['seeds'])]
                    for variant, entry in per.items()
                    if source in entry.get('paired', {})]
            if rows:
                lines += [
                    f'Paired difference to {REFERENCE}, {title} (same seed '
                    '= same split; mean ± std over seeds, two-sided paired '
                    't-test p):', '',
                    table(['variant'] + [f'Δ {h}' for _, h in METRICS] +
                          ['pairs'], rows), ''
                ]
    return '\n'.join(lines)


def paired_cells(paired: Dict[str, Any]) -> List[str]:
    cells = []
    for key, _ in METRICS:
        d = paired.get(key)
        if d is None or d['mean'] is None:
            cells.append('-')
            continue
        cell = f'{d["mean"]:+.2f} ± {d["std"]:.2f}'
        cells.append(cell if d['p'] is None else f'{cell} (p={d["p"]:.2f})')
    return cells


def metric_cells(entry: Dict[str, Any]) -> List[str]:
    """``mean ± std`` per metric of :data:`METRICS` (mean alone for one
    run, ``-`` for none)."""
    cells = []
    for key, _ in METRICS:
        m = entry[key]
        if m['mean'] is None:
            cells.append('-')
        elif m['n'] == 1:
            cells.append(f'{m["mean"]:.2f}')
        else:
            cells.append(f'{m["mean"]:.2f} ± {m["std"]:.2f}')
    return cells


def plots(args, records: List[dict]) -> List[str]:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    written = []
    ok = [r for r in records if r.get('status') == 'ok']
    for ratio in args.ratios:
        runs = [r for r in ok if r['ratio_independent'] or
                r['ratio'] == ratio]
        if not runs:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, variant in enumerate(args.variants):
            color = f'C{i % 10}'
            for j, r in enumerate(v for v in runs if v['variant'] == variant):
                steps, vals = curve(read_scalars(r['work_dir']), val_key(r))
                if not steps and r.get('val_curve'):
                    steps, vals = map(list, zip(*r['val_curve']))
                if steps:
                    ax.plot(steps, vals, '-o', ms=3, color=color, alpha=0.8,
                            label=variant if j == 0 else None)
        ax.set_xlabel('iteration')
        ax.set_ylabel('val lesion Dice % (teacher for teacher/student)')
        ax.set_title(f'Learning curves, label ratio {ratio_tag(ratio)} '
                     '(one line per seed)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = osp.join(args.out_dir,
                        f'learning_curves_r{ratio_tag(ratio)}.png')
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

        for variant in args.variants:
            vruns = [r for r in runs if r['variant'] == variant and
                     r.get('teacher_student')]
            if not vruns:
                continue
            fig, axes = plt.subplots(1, 3, figsize=(15, 4))
            for r in vruns:
                rows = read_scalars(r['work_dir'])
                for ax, task in zip(axes[:2], ('seg', 'cls')):
                    for k, zone in enumerate(('reliable', 'ambiguous',
                                              'unreliable')):
                        steps, vals = curve(rows, f'zone.{task}.{zone}')
                        ax.plot(steps, smooth(vals, args.smooth),
                                color=f'C{k}', alpha=0.8,
                                label=zone if r is vruns[0] else None)
                for k, key in enumerate(PRECISION_KEYS):
                    steps, vals = curve(rows, key)
                    axes[2].plot(steps, smooth(vals, args.smooth),
                                 color=f'C{k + 3}', alpha=0.8,
                                 label=key if r is vruns[0] else None)
            for ax, title in zip(axes, ('pixel zones', 'image zones',
                                        'pseudo-label precision')):
                if not any(len(line.get_xdata()) for line in ax.lines):
                    ax.text(0.5, 0.5, 'not logged yet\n(no reliable '
                            'pseudo-labels / hidden labels)',
                            ha='center', va='center',
                            transform=ax.transAxes)
                ax.set_title(f'{variant} r={ratio_tag(ratio)}: {title}'
                             f' (mean of {args.smooth} logs)')
                ax.set_xlabel('iteration')
                ax.set_ylim(-0.02, 1.02)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            path = osp.join(args.out_dir,
                            f'zones_{variant}_r{ratio_tag(ratio)}.png')
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


# ----------------------------------------------------------------------
#: per-run wall-clock keys of ``run.json`` (seconds)
RUN_WALL_KEYS = ('train_wall_s', 'test_wall_s', 'heldout_test_wall_s')


def runs_wall_s(records: List[dict]) -> float:
    """Train + test + held-out test seconds of ``records``, whichever
    invocation ran them (resumed trainings include their earlier part)."""
    return sum(r.get(key) or 0.0 for r in records for key in RUN_WALL_KEYS)


def planned_runs(args) -> List[Tuple[str, float, int]]:
    plan, seen = [], set()
    for ratio in args.ratios:
        for seed in args.seeds:
            for variant in args.variants:
                key = run_dir(args, variant, ratio, seed)
                if key not in seen:
                    seen.add(key)
                    plan.append((variant, ratio, seed))
    return plan


def run_plan(args, plan: List[Tuple[str, float, int]]) -> List[dict]:
    """The records of ``plan``'s runs, in plan order: read back with
    ``--report-only`` (runs without a record are left out), else run, up
    to ``--jobs`` at a time."""
    def run(i: int) -> Optional[dict]:
        variant, ratio, seed = plan[i]
        tag = f'[{i + 1}/{len(plan)}] {variant} ratio={ratio_tag(ratio)} ' \
            f'seed={seed}'
        print(tag, flush=True)
        if args.report_only:
            path = osp.join(run_dir(args, variant, ratio, seed), 'run.json')
            if osp.exists(path):
                return read_json(path)
            return read_ledger(args, variant, ratio, seed)
        rec = one_run(args, variant, ratio, seed)
        if rec.get('train_wall_s') is not None:
            print(f'  {tag} {rec["status"]}: train '
                  f'{rec["train_wall_s"]:.0f}s, test '
                  f'{rec.get("test_wall_s") or 0:.0f}s', flush=True)
        return rec

    jobs = 1 if args.report_only else args.jobs
    if jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            records = list(pool.map(run, range(len(plan))))
    else:
        records = [run(i) for i in range(len(plan))]
    return [r for r in records if r is not None]


def main(argv=None):
    args = parse_args(argv)
    import hermes_mm  # noqa: F401  (registers, and the config helpers)
    t0 = time.perf_counter()
    import torch
    env = environment('cuda' if torch.cuda.is_available() else 'cpu')
    os.makedirs(args.out_dir, exist_ok=True)
    plan = planned_runs(args)
    print(f'Quality benchmark: {len(plan)} runs -> {args.out_dir}\n'
          f'  ratios {args.ratios}, seeds {args.seeds}, variants '
          f'{args.variants}, iters {args.iters or "config"}', flush=True)
    records = run_plan(args, plan)
    if args.dry_run:
        return 0
    summary = summarise(args, records)
    # ``wall_time_s``: this invocation only (a --report-only one takes a
    # fraction of a second); ``runs_wall_s``: what the runs themselves took.
    result = dict(benchmark='quality', environment=env, args=vars(args),
                  runs=records, summary=summary,
                  wall_time_s=time.perf_counter() - t0,
                  runs_wall_s=runs_wall_s(records))
    write_json(osp.join(args.out_dir, 'results.json'), result)
    md = markdown(args, summary, env)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
        f.write(md + '\n')
    figures = plots(args, records)
    print('\n' + md)
    print('\nfigures: ' + ', '.join(osp.relpath(p, args.out_dir)
                                    for p in figures))
    failed = [r for r in records if r.get('status') != 'ok']
    print(f'\nwrote {args.out_dir}/results.json, results.md '
          f'({time.perf_counter() - t0:.0f}s; {len(failed)} failed)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
