"""Tests of TeacherThresholdUpdateHook (registered also under its old name,
DualThresholdPseudoLabelHook).

One real Runner trains a tiny Hermes (``configs/demo/hermes_synthetic.py`` at
64x64, batch 2 labelled + 2 unlabelled, 4 iterations, ramps from iteration 0,
``RampedDualThreshold`` with known values) and the numbers are checked: the
teacher is MMEngine's EMA of the recorded student states, the thresholds
follow the documented ramp, thresholds / zone ratios / pseudo-label precision
and recall (pooled, lesion pixels, per image class) reach the message hub,
and the hook state survives a checkpoint.
"""
import copy
import os.path as osp
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
import hermes_mm.engine.hooks.teacher_threshold_update_hook as hook_module
from hermes_mm.engine.hooks import (DualThresholdPseudoLabelHook,
                                    TeacherThresholdUpdateHook)
from hermes_mm.engine.hooks.teacher_threshold_update_hook import \
    CHECKPOINT_KEY
from hermes_mm.registry import HOOKS
from hermes_mm.utils import iter_dataset_cfgs

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'hermes_synthetic.py')

SIZE = 64
NUM_IMAGES = 24
MAX_ITERS = 4
MOMENTUM = 0.4  # large, so that a wrong EMA step is far outside tolerance
WINDOW = 2  # precision window shorter than the run: it must slide
# Known ramps (RampedDualThreshold docstring):
#   r(t) = clip((t - warmup) / ramp, 0, 1)
#   tau(t) = start + r(t) (final - start)
WARMUP, RAMP = 1, 4
SEG = dict(start_low=[0.5, 0.5], start_high=[0.5, 0.5],
           final_low=[0.7, 0.7], final_high=[0.9, 0.9])
# cls start_high 0.3 < 1/3: every image is reliable while it holds.
CLS = dict(start_low=[0.0, 0.1, 0.2], start_high=[0.3, 0.3, 0.3],
           final_low=[0.4, 0.4, 0.4], final_high=[0.6, 0.7, 0.8])


def documented_tau(spec, t):
    """(low, high) at iteration ``t`` from the documented formula."""
    r = min(max((t - WARMUP) / RAMP, 0.0), 1.0)
    return tuple([s + r * (f - s) for s, f in zip(spec[f'start_{b}'],
                                                  spec[f'final_{b}'])]
                 for b in ('low', 'high'))


def ramped(spec):
    return dict(
        type='RampedDualThreshold',
        start_tau_low=spec['start_low'],
        start_tau_high=spec['start_high'],
        tau_low=spec['final_low'],
        tau_high=spec['final_high'],
        warmup_iters=WARMUP,
        ramp_iters=RAMP)


def shrink(node, size):
    """Set every resize/crop/pad size in a config tree to ``size``."""
    if isinstance(node, dict):
        kind = node.get('type')
        if kind in ('RandomResize', 'Resize'):
            node['scale'] = (size, size)
        elif kind == 'RandomCrop':
            node['crop_size'] = (size, size)
        elif kind == 'SegDataPreProcessor':
            node['size'] = (size, size)
        elif kind == 'SyntheticBUSIDataset':
            node['num'] = NUM_IMAGES
        for value in node.values():
            shrink(value, size)
    elif isinstance(node, (list, tuple)):
        for value in node:
            shrink(value, size)


def tiny_hermes_cfg(data_root, work_dir, name):
    # No yapf formatting: it costs seconds each time the Runner logs or dumps
    # this config or saves a checkpoint. (MMEngine 0.10.7's fromfile ignores
    # its own format_python_code flag, hence the re-wrap.)
    cfg = Config(Config.fromfile(DEMO_CONFIG).to_dict(), filename=DEMO_CONFIG,
                 format_python_code=False)
    shrink(cfg._cfg_dict, SIZE)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
        for _, ds in iter_dataset_cfgs(cfg[key].dataset, key):
            if 'data_root' in ds:
                ds.data_root = data_root
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.sampler.batch_size = 4
    cfg.train_dataloader.sampler.source_ratio = [2, 2]
    model = cfg.model
    for key in ('unsup_weight', 'contrast_weight', 'consistency_weight'):
        model[key].update(start=0, length=0)
    model.cutmix_prob = 0.0  # every unlabelled image keeps its class
    model.ema.momentum = MOMENTUM
    model.pseudo_labeler.seg_threshold = ramped(SEG)
    model.pseudo_labeler.cls_threshold = ramped(CLS)
    cfg.custom_hooks = [
        dict(type='TeacherThresholdUpdateHook', precision_window=WINDOW)
    ]
    cfg.param_scheduler = []  # constant lr: every step moves the student
    cfg.train_cfg.max_iters = MAX_ITERS
    cfg.train_cfg.val_interval = 1000  # no validation: not under test here
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.update(
        interval=MAX_ITERS, save_best=None, max_keep_ckpts=1)
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    cfg.visualizer.name = f'vis_{name}'
    return cfg


class Recorder(Hook):
    """Records what each iteration used and produced.

    The update hook pops the pseudo-label counts
    (``pseudo_labeler.pop_counts()``) in its ``after_train_iter``, before
    this LOWEST-priority hook runs, so ``pop_counts`` is wrapped to record
    what it hands out; each iteration must pop exactly once.
    """
    priority = 'LOWEST'

    def __init__(self):
        self.thresholds, self.students, self.stats = [], [], []
        self.hidden_pixels, self.hidden_images = [], []
        self.popped = []

    def before_train(self, runner):
        labeler = runner.model.pseudo_labeler
        pop_counts = self.pop_counts = labeler.pop_counts

        def spy():
            counts = pop_counts()
            self.popped.append(dict(counts))
            return counts

        labeler.pop_counts = spy

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        self.thresholds.append({
            task: [t.tolist() for t in getattr(
                model.pseudo_labeler, f'{task}_threshold').thresholds()]
            for task in ('seg', 'cls')
        })
        samples = [s for s in data_batch['data_samples']['unsup_strong']
                   if s is not None]
        self.hidden_pixels.append(
            sum(int((s.hidden_sem_seg.data != 255).sum()) for s in samples))
        self.hidden_images.append(
            sum(int(s.hidden_label.item() >= 0) for s in samples))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = runner.model
        self.students.append({
            k: v.detach().clone()
            for k, v in model.student.state_dict().items()
        })
        # popped once per iteration, by the update hook
        assert len(self.popped) == len(self.students)
        self.stats.append(self.popped[-1])
        # ... which left nothing behind
        assert self.pop_counts() == {}


@pytest.fixture(scope='module')
def hermes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('hermes_hook')
    data_root = str(root / 'data')  # empty: the dataset generates into it
    name = f'hook_test_{time.time_ns()}'
    cfg = tiny_hermes_cfg(data_root, str(root / 'work'), name)
    reload_cfg = copy.deepcopy(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    # One intra-op thread: on 2 shared cores, tiny 64x64 convolutions run
    # several times faster than with two contending OpenMP threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)
    hook = next(h for h in runner.hooks
                if isinstance(h, TeacherThresholdUpdateHook))
    return SimpleNamespace(
        runner=runner, model=runner.model, hook=hook, rec=recorder,
        root=root, reload_cfg=reload_cfg, name=name, data_root=data_root)


def hub_series(runner, key):
    return runner.message_hub.get_scalar(key).data[0].tolist()


def test_teacher_is_mmengine_ema_of_recorded_students(hermes_run):
    students = hermes_run.rec.students
    assert len(students) == MAX_ITERS
    # MMEngine's ExponentialMovingAverage: the first update copies the
    # source; later ones do avg = (1 - m) avg + m x on floating entries
    # (parameters and, with update_buffers=True, BN statistics).
    expected = {k: v.clone() for k, v in students[0].items()}
    for state in students[1:]:
        for key, value in expected.items():
            if value.is_floating_point():
                expected[key] = (1 - MOMENTUM) * value + MOMENTUM * state[key]
    teacher = hermes_run.model.teacher
    got = teacher.module.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5,
                                   atol=1e-6, msg=key)
    assert int(teacher.steps) == MAX_ITERS
    # Non-vacuous: the teacher is neither the last nor the first student.
    for other in (students[-1], students[0]):
        gap = max((got[k] - other[k]).abs().max().item()
                  for k in got if 'weight' in k)
        assert gap > 1e-4
    assert not teacher.training and hermes_run.model.student.training


def test_thresholds_follow_documented_ramp(hermes_run):
    model, rec = hermes_run.model, hermes_run.rec
    for task, spec in (('seg', SEG), ('cls', CLS)):
        # Iteration t runs with tau(t) ...
        for t, used in enumerate(rec.thresholds):
            np.testing.assert_allclose(used[task], documented_tau(spec, t),
                                       atol=1e-6, err_msg=f'{task} iter {t}')
        # ... the model ends holding tau(max_iters) for the next iteration
        final = [x.tolist() for x in getattr(
            model.pseudo_labeler, f'{task}_threshold').thresholds()]
        np.testing.assert_allclose(final, documented_tau(spec, MAX_ITERS),
                                   atol=1e-6)
        # ... and the hook logs, for iteration t, the tau(t) it ran with
        # (on the same log line as that iteration's zone ratios).
        for bound, index in (('low', 0), ('high', 1)):
            for c in range(len(spec['start_low'])):
                logged = hub_series(hermes_run.runner,
                                    f'train/thr.{task}.{bound}.{c}')
                want = [documented_tau(spec, t)[index][c]
                        for t in range(MAX_ITERS)]
                np.testing.assert_allclose(logged, want, atol=1e-6)
    # closed form at the end: r(4) = 0.75
    labeler = model.pseudo_labeler
    np.testing.assert_allclose(labeler.seg_threshold.tau_low, [0.65, 0.65])
    np.testing.assert_allclose(labeler.seg_threshold.tau_high, [0.8, 0.8])
    np.testing.assert_allclose(labeler.cls_threshold.tau_high,
                               [0.525, 0.6, 0.675])


def test_zone_ratios_reach_message_hub(hermes_run):
    runner = hermes_run.runner
    for task in ('seg', 'cls'):
        ratios = {
            zone: hub_series(runner, f'train/zone.{task}.{zone}')
            for zone in ('reliable', 'ambiguous', 'unreliable')
        }
        assert all(len(v) == MAX_ITERS for v in ratios.values())
        np.testing.assert_allclose(
            np.sum(list(ratios.values()), axis=0), np.ones(MAX_ITERS),
            atol=1e-5)
        # Iterations 0 and 1 run with tau_high below every possible
        # confidence (0.5 for two classes, 1/3 for three): all reliable.
        np.testing.assert_allclose(ratios['reliable'][:2], [1.0, 1.0])
    # The log line carries them too.
    log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')
    with open(log_file) as f:
        log = f.read()
    assert 'zone.seg.reliable' in log and 'thr.cls.high.2' in log


def test_precision_from_hidden_labels(hermes_run):
    rec = hermes_run.rec
    # Everything is reliable at iteration 0, so the precision counts cover
    # every valid hidden pixel / labelled unlabelled image.
    first = rec.stats[0]
    assert first['seg.precision'][1] == rec.hidden_pixels[0] > 0
    assert first['cls.precision'][1] == rec.hidden_images[0] == 2
    # everything reliable: every hidden lesion pixel / image of a class has
    # a pseudo-label, so the recall denominators are the hidden counts
    assert first['seg.lesion.recall'][1] > 0
    assert sum(first[f'cls.{c}.recall'][1] for c in range(3)) == 2
    names = ['seg.precision', 'cls.precision', 'seg.lesion.precision',
             'seg.lesion.recall', 'seg.lesion.as_background',
             'seg.false_lesion_images'] + [
                 f'cls.{c}.{kind}' for c in range(3)
                 for kind in ('precision', 'recall')]
    assert set(first) == set(names)
    logged_names = []
    for name in names:
        expected = []
        for t in range(MAX_ITERS):
            window = [s[name] for s in rec.stats[max(0, t - WINDOW + 1):t + 1]]
            total = sum(n for _, n in window)
            if total > 0:
                expected.append(sum(c for c, _ in window) / total)
        key = f'train/pl.{name}'
        if not expected:
            assert key not in hermes_run.runner.message_hub.log_scalars
            continue
        logged = hub_series(hermes_run.runner, key)
        np.testing.assert_allclose(logged, expected, rtol=1e-6)
        assert all(0 <= p <= 1 for p in logged)
        logged_names.append(name)
    for name in ('seg.precision', 'cls.precision', 'seg.lesion.precision',
                 'seg.lesion.recall'):
        assert len(hub_series(hermes_run.runner, f'train/pl.{name}')) >= 2
    assert any(n.startswith('cls.') and n.endswith('.recall')
               for n in logged_names)
    assert list(hermes_run.hook.windows['seg.precision']) == [
        tuple(s['seg.precision']) for s in rec.stats[-WINDOW:]
    ]
    # ... and they are on the log lines
    runner = hermes_run.runner
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    for name in ('pl.seg.lesion.precision', 'pl.seg.lesion.recall',
                 'pl.cls.precision'):
        assert name in log, name


def test_state_round_trips_through_checkpoint(hermes_run):
    hook = hermes_run.hook
    # In memory: plain lists of floats (weights-only safe), same maxlen.
    checkpoint = {}
    hook.before_save_checkpoint(hermes_run.runner, checkpoint)
    state = checkpoint[CHECKPOINT_KEY]
    assert all(isinstance(x, float) for items in state['windows'].values()
               for item in items for x in item)
    fresh = TeacherThresholdUpdateHook(precision_window=WINDOW)
    fresh.after_load_checkpoint(hermes_run.runner, checkpoint)
    assert fresh.windows == hook.windows
    assert all(w.maxlen == WINDOW for w in fresh.windows.values())
    # A checkpoint from before the hook existed loads without error.
    older = TeacherThresholdUpdateHook()
    older.after_load_checkpoint(hermes_run.runner, {})
    assert older.windows == {}

    # On disk, through a new Runner's load_checkpoint: the hook windows,
    # teacher (incl. its EMA step count), thresholds, queues, prototypes.
    ckpt_path = osp.join(hermes_run.runner.work_dir, f'iter_{MAX_ITERS}.pth')
    assert osp.isfile(ckpt_path)
    cfg = copy.deepcopy(hermes_run.reload_cfg)
    cfg.experiment_name = name = hermes_run.name + '_reload'
    cfg.visualizer.name = f'vis_{name}'
    cfg.work_dir = str(hermes_run.root / 'work_reload')
    runner = Runner.from_cfg(cfg)
    loaded_hook = next(h for h in runner.hooks
                       if isinstance(h, TeacherThresholdUpdateHook))
    assert loaded_hook.windows == {}
    runner.load_checkpoint(ckpt_path)
    assert loaded_hook.windows == hook.windows
    want = hermes_run.model.state_dict()
    got = runner.model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0,
                                   msg=key)
    assert int(runner.model.teacher.steps) == MAX_ITERS


class FakeLabeler:
    """Just the hook-facing interface of DualThresholdPseudoLabeler."""

    def __init__(self, calls):
        self.calls = calls
        self.counts = {}

    def update(self, iteration):
        self.calls.append(('update_thresholds', iteration))

    def threshold_scalars(self):
        return {}

    def pop_counts(self):
        counts, self.counts = self.counts, {}
        return counts


class FakeHermes(nn.Module):
    """Just the hook-facing interface of HermesSegmentor."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.pseudo_labeler = FakeLabeler(self.calls)
        self.img_contrast = SimpleNamespace(
            steps_without_pairs=torch.tensor(0))

    def set_iteration(self, iteration):
        self.calls.append(('set_iteration', iteration))

    def update_teacher(self, iteration):
        self.calls.append(('update_teacher', iteration))


def fake_runner(model, iteration=0):
    hub = MessageHub.get_instance(f'fake_hub_{time.time_ns()}')
    return SimpleNamespace(model=model, iter=iteration, message_hub=hub)


def test_precision_window_slides_and_skips_empty_windows():
    model = FakeHermes()
    hook = TeacherThresholdUpdateHook(precision_window=2,
                                      log_thresholds=False)
    runner = fake_runner(model)
    steps = [{'seg': (3.0, 4.0)}, {'seg': (1.0, 4.0)}, {'seg': (0.0, 0.0)},
             {'seg': (0.0, 0.0)}, {}, {'seg': (2.0, 2.0)}]
    for i, stats in enumerate(steps):
        runner.iter = i
        model.pseudo_labeler.counts = stats
        hook.before_train_iter(runner, i)
        hook.after_train_iter(runner, i)
    # windows: [3/4], [3+1 / 8], [1/4], [0/0 -> not logged], ..., [2/2]
    assert hub_series(runner, 'train/pl.seg.precision') == [
        0.75, 0.5, 0.25, 1.0
    ]
    assert 'train/pl.cls.precision' not in runner.message_hub.log_scalars
    assert model.calls[:3] == [('set_iteration', 0), ('update_teacher', 0),
                               ('update_thresholds', 0)]
    assert ('update_thresholds', 5) in model.calls


def test_per_class_diagnostics_reach_the_log():
    """Every ``pseudo_labeler.pop_counts()`` entry is logged as
    ``pl.<name>``, the ratio of its counts summed over the window; bare
    task names (older models and checkpoints) mean pooled precision."""
    model = FakeHermes()
    hook = TeacherThresholdUpdateHook(precision_window=2,
                                      log_thresholds=False)
    runner = fake_runner(model)
    steps = [
        {'seg.lesion.precision': (3.0, 4.0), 'seg.lesion.recall': (3.0, 6.0),
         'cls.2.recall': (0.0, 0.0)},
        {'seg.lesion.precision': (1.0, 4.0), 'seg.lesion.recall': (1.0, 2.0),
         'cls.2.recall': (1.0, 2.0), 'cls': (1.0, 4.0)},
    ]
    for i, stats in enumerate(steps):
        runner.iter = i
        model.pseudo_labeler.counts = stats
        hook.after_train_iter(runner, i)
    assert hub_series(runner, 'train/pl.seg.lesion.precision') == [0.75, 0.5]
    assert hub_series(runner, 'train/pl.seg.lesion.recall') == [0.5, 0.5]
    assert hub_series(runner, 'train/pl.cls.2.recall') == [0.5]
    assert hub_series(runner, 'train/pl.cls.precision') == [0.25]
    assert set(hook.windows) == {'seg.lesion.precision', 'seg.lesion.recall',
                                 'cls.2.recall', 'cls.precision'}
    # a checkpoint from before the per-class names restores under the new
    fresh = TeacherThresholdUpdateHook(precision_window=2)
    fresh.after_load_checkpoint(runner, {CHECKPOINT_KEY: dict(
        windows={'seg': [[1.0, 2.0]]})})
    assert list(fresh.windows) == ['seg.precision']


def test_starvation_warning(monkeypatch):
    messages = []
    monkeypatch.setattr(
        hook_module, 'print_log',
        lambda msg, logger=None, level=None: messages.append((msg, level)))
    model = FakeHermes()
    hook = TeacherThresholdUpdateHook(no_pair_warning_iters=3)
    runner = fake_runner(model, iteration=9)
    counter = model.img_contrast.steps_without_pairs
    for value, warns in ((2, False), (3, True), (4, False), (0, False),
                         (5, True)):
        counter.fill_(value)
        before = len(messages)
        hook.check_contrastive_pairs(runner, model)
        assert len(messages) - before == int(warns), value
    msg, level = messages[0]
    assert level == 30  # logging.WARNING
    assert msg.startswith('img_contrast has') and 'for 3 iterations' in msg
    assert 'at iter 10' in msg
    # 0 switches the check off.
    off = TeacherThresholdUpdateHook(no_pair_warning_iters=0)
    counter.fill_(100)
    off.check_contrastive_pairs(runner, model)
    assert len(messages) == 2


@pytest.mark.parametrize('kwargs, match', [
    (dict(precision_window=0), 'precision_window must be >= 1, got 0'),
    (dict(no_pair_warning_iters=-1), 'no_pair_warning_iters must be >= 0'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TeacherThresholdUpdateHook(**kwargs)


class PlainModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=out.sum())
        return out


class PairDataset(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)))


def test_old_name_is_an_alias():
    assert DualThresholdPseudoLabelHook is TeacherThresholdUpdateHook
    assert HOOKS.get('DualThresholdPseudoLabelHook') is \
        TeacherThresholdUpdateHook
    assert HOOKS.get('TeacherThresholdUpdateHook') is \
        TeacherThresholdUpdateHook


# The old name still works in a config.
@pytest.mark.parametrize(
    'hook_type',
    ['TeacherThresholdUpdateHook', 'DualThresholdPseudoLabelHook'])
def test_non_teacher_student_model_raises_type_error(tmp_path, hook_type):
    model = PlainModel()
    before = model.linear.weight.detach().clone()
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        experiment_name=f'hook_plain_{time.time_ns()}',
        train_dataloader=DataLoader(
            PairDataset(), batch_size=2, collate_fn=lambda b: dict(
                inputs=[x['inputs'] for x in b])),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=2),
        custom_hooks=[dict(type=hook_type)],
        default_scope='mmseg',
        default_hooks=dict(checkpoint=None))
    with pytest.raises(TypeError, match='teacher/student model such as '
                       r'HermesSegmentor \(no `set_iteration` on PlainModel'):
        runner.train()
    assert any(isinstance(h, TeacherThresholdUpdateHook) for h in runner.hooks)
    # It fails before the first step.
    torch.testing.assert_close(model.linear.weight, before)
