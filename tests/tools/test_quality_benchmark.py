"""benchmarks/quality.py: the held-out synthetic test set (options, the
training-seed clash check, the second results table). No training runs."""
import os.path as osp

import pytest


@pytest.fixture(scope='module')
def quality(load_script):
    return load_script('benchmarks/quality.py')


def test_heldout_defaults_and_options(quality, tmp_path):
    args = quality.parse_args(['--cache-dir', str(tmp_path)])
    assert (args.heldout_num, args.heldout_seed) == (400, 1000)
    opts = quality.heldout_options(args)
    assert opts[0] == '--cfg-options'
    root = osp.join(str(tmp_path), 'synthetic_busi_heldout_n400_seed1000')
    assert opts[1:] == [
        f'test_dataloader.dataset.data_root={root}',
        'test_dataloader.dataset.num=400',
        'test_dataloader.dataset.generator_seed=1000',
        'test_dataloader.dataset.subset=None'
    ]


def test_heldout_off_for_real_data_and_negative_rejected(quality, tmp_path):
    args = quality.parse_args(['--data-root', str(tmp_path)])
    assert args.heldout_num == 0
    with pytest.raises(SystemExit):
        quality.parse_args(['--heldout-num', '-1'])


def test_heldout_seed_must_differ_from_training_seed(quality, tmp_path):
    args = quality.parse_args(
        ['--cache-dir',
         str(tmp_path), '--heldout-seed', '0', '--iters', '10'])
    with pytest.raises(SystemExit, match='generator seed'):
        quality.make_config(args, 'supervised', 0.125, 0,
                            str(tmp_path / 'cfg.py'))
    args.heldout_seed = 1000
    facts = quality.make_config(args, 'supervised', 0.125, 0,
                                str(tmp_path / 'cfg.py'))
    assert facts['max_iters'] == 10


def _record(variant, seed, dice, heldout_dice=None):
    metrics = {
        'seg/dice': dice,
        'seg/iou': 1.0,
        'seg/hd95': 2.0,
        'cls/accuracy': 3.0,
        'cls/f1': 4.0,
        'cls/auc': 5.0
    }
    rec = dict(
        variant=variant,
        ratio=0.125,
        seed=seed,
        status='ok',
        ratio_independent=False,
        train_wall_s=60.0,
        metrics=metrics)
    if heldout_dice is not None:
        rec['heldout_metrics'] = dict(metrics, **{'seg/dice': heldout_dice})
    return rec


def _dice_cells(text):
    """variant -> Dice cell of a markdown table."""
    return {
        line.split('|')[1].strip(): line.split('|')[2].strip()
        for line in text.splitlines() if line.startswith('| ')
    }


def test_summary_and_markdown_report_both_test_sets(quality, tmp_path):
    args = quality.parse_args([
        '--cache-dir',
        str(tmp_path), '--variants', 'supervised', 'hermes', '--ratios',
        '0.125'
    ])
    records = [
        _record('supervised', 0, 80.0, 70.0),
        _record('supervised', 1, 82.0, 74.0),
        # A run without a held-out test yet is left out of that table only.
        _record('hermes', 0, 84.0),
        _record('hermes', 1, 86.0, 77.0),
    ]
    summary = quality.summarise(args, records)['0.125']
    assert summary['supervised']['seg/dice']['mean'] == pytest.approx(81.0)
    assert summary['supervised']['heldout']['seg/dice']['mean'] == \
        pytest.approx(72.0)
    assert summary['hermes']['seg/dice']['n'] == 2
    assert summary['hermes']['heldout']['n_runs'] == 1
    assert summary['hermes']['heldout']['seg/dice']['mean'] == 77.0
    env = dict(cpu='cpu', cpu_count=2, torch='x', torch_threads=2)
    md = quality.markdown(args, quality.summarise(args, records), env)
    assert 'Held-out set: 400 images generated with generator seed 1000' \
        in md
    tables, _, _ = md.split('Paired difference')
    split_table, held_table = tables.split('Held-out set:')
    assert _dice_cells(split_table) == dict(
        variant='Dice %', supervised='81.00 ± 1.41', hermes='85.00 ± 1.41')
    assert _dice_cells(held_table) == dict(
        variant='Dice %', supervised='72.00 ± 2.83', hermes='77.00')
    # Paired per-seed differences to the supervised run of the same seed.
    paired = summary['hermes']['paired']
    assert paired['metrics']['seeds'] == [0, 1]
    assert paired['metrics']['seg/dice']['mean'] == pytest.approx(4.0)
    assert paired['heldout_metrics']['seeds'] == [1]
    assert paired['heldout_metrics']['seg/dice']['mean'] == 3.0
    assert 'paired' not in summary['supervised']
    paired_md = md.split('Paired difference to supervised, held-out')[1]
    assert _dice_cells(paired_md)['hermes'] == '+3.00 ± 0.00'
    # Without held-out results there is one table only.
    plain = [dict(r) for r in records]
    for r in plain:
        r.pop('heldout_metrics', None)
    assert 'Held-out' not in quality.markdown(args,
                                              quality.summarise(args, plain),
                                              env)


def test_runs_wall_time_adds_every_recorded_part(quality):
    records = [
        dict(train_wall_s=600.0, test_wall_s=20.0, heldout_test_wall_s=40.0),
        # a failed run has no test times; None counts as nothing
        dict(train_wall_s=30.0, test_wall_s=None),
    ]
    assert quality.runs_wall_s(records) == pytest.approx(690.0)
    assert quality.runs_wall_s([]) == 0.0


def test_variant_config_adds_a_named_variant(quality, tmp_path, capsys):
    """--variant-config NAME=CONFIG runs CONFIG under NAME (its run dir
    and the written config's source); bad forms are rejected by name."""
    cfg = tmp_path / 'my_ablation.py'
    cfg.write_text("_base_ = '{}'\nmodel = dict(cutmix_prob=0.25)\n".format(
        osp.join(quality.REPO_ROOT, 'configs/demo/hermes_synthetic.py')))
    args = quality.parse_args([
        '--cache-dir', str(tmp_path), '--out-dir', str(tmp_path / 'out'),
        '--iters', '10', '--variants', 'hermes', 'mine',
        '--variant-config', f'mine={cfg}'])
    assert args.variants == ['hermes', 'mine']
    facts = quality.make_config(args, 'mine', 0.125, 0,
                                str(tmp_path / 'cfg.py'))
    assert facts['source_config'] == str(cfg)
    from mmengine.config import Config
    written = Config.fromfile(str(tmp_path / 'cfg.py'))
    assert written.model.cutmix_prob == 0.25
    assert quality.run_dir(args, 'mine', 0.125, 0).endswith(
        osp.join('runs', 'mine', 'r0.125', 'seed0'))
    facts = quality.make_config(args, 'hermes', 0.125, 0,
                                str(tmp_path / 'cfg2.py'))
    assert facts['source_config'] == 'configs/demo/hermes_synthetic.py'

    for bad, match in ((['--variants', 'nope'], 'unknown'),
                       (['--variant-config', 'mine'], 'NAME=CONFIG'),
                       (['--variant-config', f'hermes={cfg}'], 'taken'),
                       (['--variant-config', 'x=/no/such.py'],
                        'no such config')):
        with pytest.raises(SystemExit):
            quality.parse_args(['--cache-dir', str(tmp_path)] + bad)
        assert match in capsys.readouterr().err


def test_every_built_in_variant_names_existing_configs(quality):
    """A typo in the variant table would only show hours into a study."""
    missing = [(name, path) for name, paths in quality.VARIANTS.items()
               for path in paths
               if not osp.isfile(osp.join(quality.REPO_ROOT, path))]
    assert not missing
    assert quality.VARIANTS['hermes_class_dice'] == (
        'configs/demo/variants/hermes_synthetic_class_dice.py',
        'configs/variants/hermes_busi_class_dice.py')


def test_benchmarks_readme_lists_every_built_in_variant(quality):
    """The README's list of ``quality.py``'s default variants is what users
    read instead of ``--help``; a variant added to the table must be there.
    """
    with open(osp.join(quality.REPO_ROOT, 'benchmarks', 'README.md')) as f:
        text = f.read()
    start = text.index('(default all:')
    listed = text[start:text.index(') it\nwrites a config', start)]
    missing = [name for name in quality.VARIANTS
               if f'`{name}`' not in listed]
    assert not missing, f'benchmarks/README.md does not list {missing}'


def test_jobs_run_side_by_side_and_keep_plan_order(quality, tmp_path,
                                                   monkeypatch):
    """--jobs 2 runs two runs at the same time (a barrier that two
    sequential runs could never pass) and returns the records in plan
    order; --report-only reads back only the runs that have a record."""
    import threading
    args = quality.parse_args([
        '--cache-dir', str(tmp_path), '--out-dir', str(tmp_path / 'out'),
        '--seeds', '0', '1', '2', '--ratios', '0.125', '--variants',
        'supervised', '--jobs', '2'])
    plan = quality.planned_runs(args)
    assert [seed for _, _, seed in plan] == [0, 1, 2]
    barrier = threading.Barrier(2, timeout=10)

    def fake_run(args, variant, ratio, seed):
        if seed < 2:  # the first two runs wait for each other
            barrier.wait()
        return dict(variant=variant, ratio=ratio, seed=seed, status='ok')

    monkeypatch.setattr(quality, 'one_run', fake_run)
    records = quality.run_plan(args, plan)
    assert [r['seed'] for r in records] == [0, 1, 2]

    # the same barrier breaks when the runs go one after another
    args.jobs = 1
    barrier = threading.Barrier(2, timeout=0.2)
    with pytest.raises(threading.BrokenBarrierError):
        quality.run_plan(args, plan)

    args.report_only = True
    quality.write_json(
        osp.join(quality.run_dir(args, 'supervised', 0.125, 1), 'run.json'),
        dict(variant='supervised', seed=1, status='ok'))
    assert [r['seed'] for r in quality.run_plan(args, plan)] == [1]


def test_jobs_split_the_cpu_threads_unless_the_caller_set_them(
        quality, tmp_path, monkeypatch):
    args = quality.parse_args(['--cache-dir', str(tmp_path), '--jobs', '2'])
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(quality.os, 'cpu_count', lambda: 8)
    env = quality.subprocess_env(args)
    assert env['OMP_NUM_THREADS'] == env['MKL_NUM_THREADS'] == '4'
    args.jobs = 16
    assert quality.subprocess_env(args)['OMP_NUM_THREADS'] == '1'
    args.jobs = 1
    assert 'OMP_NUM_THREADS' not in quality.subprocess_env(args)
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    args.jobs = 2
    assert quality.subprocess_env(args)['OMP_NUM_THREADS'] == '3'
    with pytest.raises(SystemExit):
        quality.parse_args(['--cache-dir', str(tmp_path), '--jobs', '0'])


def test_schedule_rescaled_and_too_short_a_schedule_named(quality,
                                                          tmp_path):
    """--iters scales every iteration count of the config (600 -> 1200
    doubles them); a length that leaves an LR scheduler an empty range is
    refused with the option and the scheduler named, not MMEngine's
    'end should be larger than begin' at the first training step."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(quality.REPO_ROOT, 'configs/demo/hermes_synthetic.py'))
    assert cfg.train_cfg.max_iters == 600
    quality.rescale_schedule(cfg, 1200, 4)
    assert [(s['begin'], s['end']) for s in cfg.param_scheduler] == [
        (0, 100), (100, 1200)]
    assert (cfg.model.unsup_weight.start,
            cfg.model.unsup_weight.length) == (200, 400)
    assert cfg.train_cfg.val_interval == 300
    short = Config.fromfile(
        osp.join(quality.REPO_ROOT, 'configs/demo/hermes_synthetic.py'))
    with pytest.raises(SystemExit, match='--iters 5 is too short.*LinearLR'):
        quality.rescale_schedule(short, 5, 1)


def test_ledger_keeps_finished_runs_when_the_work_dir_is_gone(
        quality, tmp_path, monkeypatch):
    """--ledger: a finished run's record (with its validation curve) is
    written there; on a machine without the work dir the run counts as
    done (nothing trains) and --report-only reads it; a ledger record of
    another schedule is refused, not reused."""
    import json
    import shutil
    argv = ['--cache-dir', str(tmp_path), '--out-dir',
            str(tmp_path / 'out'), '--ledger', str(tmp_path / 'ledger'),
            '--seeds', '0', '--ratios', '0.125', '--variants', 'hermes',
            '--iters', '40', '--heldout-num', '0']
    args = quality.parse_args(argv)
    wd = quality.run_dir(args, 'hermes', 0.125, 0)
    record = dict(variant='hermes', ratio=0.125, seed=0, work_dir=wd,
                  status='ok', requested_iters=40, max_iters=40,
                  checkpoint_rule='last', ratio_independent=False,
                  teacher_student=True, metrics={'seg/dice': 70.0})
    quality.write_json(osp.join(wd, 'run.json'), record)
    quality.write_json(osp.join(wd, 'metrics.json'), record['metrics'])
    vis = tmp_path / 'out' / 'runs' / 'hermes' / 'r0.125' / 'seed0' / \
        '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(
        json.dumps({'step': 20, 'teacher/seg/dice': 50.0}) + '\n' +
        json.dumps({'step': 40, 'teacher/seg/dice': 60.0}) + '\n')

    def no_training(*a, **k):
        raise AssertionError('a finished run must not train again')

    monkeypatch.setattr(quality, 'run_cmd', no_training)
    assert quality.one_run(args, 'hermes', 0.125, 0)['status'] == 'ok'
    path = tmp_path / 'ledger' / 'hermes' / 'r0.125' / 'seed0.json'
    kept = quality.read_json(str(path))
    assert kept['metrics'] == {'seg/dice': 70.0}
    assert kept['val_curve'] == [[20, 50.0], [40, 60.0]]

    shutil.rmtree(tmp_path / 'out')  # a new machine
    assert quality.one_run(args, 'hermes', 0.125, 0)['metrics'] == \
        {'seg/dice': 70.0}
    assert not osp.exists(wd)
    args.report_only = True
    plan = quality.planned_runs(args)
    assert [r['seed'] for r in quality.run_plan(args, plan)] == [0]
    (tmp_path / 'out').mkdir()  # as main() does
    assert quality.plots(args, quality.run_plan(args, plan))

    other = quality.parse_args(argv[:-4] + ['--iters', '80',
                                            '--heldout-num', '0'])
    with pytest.raises(SystemExit, match='--iters 40'):
        quality.one_run(other, 'hermes', 0.125, 0)
    # without --ledger nothing is read from it
    plain = quality.parse_args(argv[:4] + argv[6:])
    plain.report_only = True
    assert quality.run_plan(plain, plan) == []


def test_hermes_subclasses_are_rescaled_and_tested_as_teacher_student(
        quality, monkeypatch):
    """A research variant whose model type subclasses HermesSegmentor
    (``research/pseudo_head``) gets its loss ramps rescaled like Hermes
    and counts as teacher-student; a type-name check missed both (the
    amendment-23 runs kept the 600-iteration ramps, amendment 32)."""
    from mmengine.config import Config
    monkeypatch.syspath_prepend(quality.REPO_ROOT)
    research = Config.fromfile(
        osp.join(quality.REPO_ROOT, 'research', 'pseudo_head', 'configs',
                 'hermes_pseudo_head.py'))
    assert research.model.type != 'HermesSegmentor'
    quality.rescale_schedule(research, 1200, 4)
    # spelled out, not quality.RAMP_KEYS: a key dropped there must fail
    for key in ('unsup_weight', 'contrast_weight', 'consistency_weight'):
        assert (research.model[key].start,
                research.model[key].length) == (200, 400), key
    assert quality.is_teacher_student(research)
    demo = Config.fromfile(
        osp.join(quality.REPO_ROOT, 'configs/demo/hermes_synthetic.py'))
    assert quality.is_teacher_student(demo)
    supervised = Config.fromfile(osp.join(
        quality.REPO_ROOT, 'configs/demo/supervised_synthetic.py'))
    assert not quality.is_teacher_student(supervised)
