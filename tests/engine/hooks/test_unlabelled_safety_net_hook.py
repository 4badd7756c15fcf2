"""Tests of UnlabelledSafetyNetHook (issue 20, item 5).

A real MMEngine Runner trains a toy model (one linear layer, the
``set_unlabelled_scale`` interface of HermesSegmentor) and validates it with
a metric that reports a scripted score sequence, so every decision of the
hook is known: which state is the best, when it backs off, what the model
and the last checkpoint on disk hold afterwards, and what ``--resume`` and
``load_from`` take over.
"""
import os.path as osp
import time

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import hermes_mm  # noqa: F401  (registers the hooks)
from hermes_mm.engine.hooks import UnlabelledSafetyNetHook
from hermes_mm.engine.hooks.unlabelled_safety_net_hook import CHECKPOINT_KEY
from hermes_mm.registry import HOOKS

KEYS = ('teacher/seg/dice_lesion', 'teacher/cls/accuracy')
TOLERANCE = 3.0


class ToyModel(BaseModel):
    """A linear layer trained by SGD; records the scales it was given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(2, 1)
        self.register_buffer('steps', torch.zeros(()))
        self.scales = []

    def set_unlabelled_scale(self, scale):
        self.scales.append(scale)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            self.steps += 1
            return dict(loss=(out - 3.0).pow(2).mean())
        return [out]


class PairDataset(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index), 1.0]))


def collate(batch):
    return dict(inputs=[x['inputs'] for x in batch])


class ScriptedMetric(BaseMetric):
    """Reports ``scores[i]`` for both score keys at the i-th evaluation."""

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        score = self.scores.pop(0)
        return {key: score for key in KEYS}


class StateRecorder(Hook):
    """The model's parameters after every training iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.states = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.states[runner.iter + 1] = {
            key: value.clone() for key, value in
            runner.model.state_dict().items()
        }


def make_runner(work_dir, scores, max_iters, hook=None, model=None,
                validate=True, **kwargs):
    hook = hook or dict(type='UnlabelledSafetyNetHook', score_keys=KEYS,
                        tolerance=TOLERANCE, decay=0.5)
    loader = dict(dataset=PairDataset(), batch_size=2, collate_fn=collate)
    runner = Runner(
        model=model or ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'safety_{time.time_ns()}',
        train_dataloader=DataLoader(**loader, shuffle=False),
        val_dataloader=DataLoader(**loader) if validate else None,
        val_evaluator=Evaluator(ScriptedMetric(scores)) if validate else None,
        val_cfg=dict() if validate else None,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=2),
        custom_hooks=[hook],
        default_scope='mmseg',
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False,
                            interval=2, max_keep_ckpts=1),
            logger=dict(type='LoggerHook', interval=1)),
        **kwargs)
    recorder = StateRecorder()
    runner.register_hook(recorder)
    safety = next(h for h in runner.hooks
                  if isinstance(h, UnlabelledSafetyNetHook))
    return runner, recorder, safety


def assert_state(got, want):
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0,
                                   msg=key)


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_drop_at_the_last_validation_restores_and_resaves(tmp_path):
    # validations at iterations 2, 4, 6: best, within tolerance, a drop
    runner, recorder, hook = make_runner(
        tmp_path, [50.0, 50.0 - TOLERANCE + 0.5, 50.0 - TOLERANCE - 0.5], 6)
    runner.train()
    best = recorder.states[2]
    # the drop at 6 restored iteration 2's state (teacher/buffers too)
    assert_state(runner.model.state_dict(), best)
    assert float(runner.model.steps) == 2
    # ... and not before: iteration 4 (within tolerance) trained on
    assert not torch.equal(recorder.states[4]['linear.weight'],
                           best['linear.weight'])
    assert runner.model.scales == [1.0, 0.5]
    assert (hook.scale, hook.best_score, hook.best_iter, hook.backoffs) == (
        0.5, 50.0, 2, 1)
    assert runner.message_hub.get_scalar(
        'train/safety.unlabelled_scale').current() == 0.5
    # the final checkpoint, written before the last validation, holds the
    # restored model (written again), with the meta of iteration 6
    ckpt = load(osp.join(tmp_path, 'iter_6.pth'))
    assert_state(ckpt['state_dict'], best)
    assert ckpt['meta']['iter'] == 6
    state = ckpt[CHECKPOINT_KEY]
    assert (state['scale'], state['best_score'], state['best_iter'],
            state['backoffs']) == (0.5, 50.0, 2, 1)
    assert_state(state['best_state'], best)


def test_a_better_score_moves_the_reference(tmp_path):
    runner, recorder, hook = make_runner(tmp_path, [40.0, 45.0, 41.0], 6)
    runner.train()
    # 41 < 45 - 3: back to iteration 4, the newer best
    assert_state(runner.model.state_dict(), recorder.states[4])
    assert (hook.best_score, hook.best_iter, hook.scale) == (45.0, 4, 0.5)


def test_no_drop_no_action(tmp_path):
    runner, recorder, hook = make_runner(tmp_path, [40.0, 38.0, 39.0], 6)
    runner.train()
    assert_state(runner.model.state_dict(), recorder.states[6])
    assert runner.model.scales == [1.0]
    assert (hook.scale, hook.backoffs, hook.best_iter) == (1.0, 0, 2)


def test_without_restore_only_the_scale_falls(tmp_path):
    hook_cfg = dict(type='UnlabelledSafetyNetHook', score_keys=KEYS,
                    tolerance=TOLERANCE, decay=0.0, restore_best=False)
    runner, recorder, hook = make_runner(tmp_path, [50.0, 10.0], 4,
                                         hook=hook_cfg)
    runner.train()
    assert_state(runner.model.state_dict(), recorder.states[4])
    assert runner.model.scales == [1.0, 0.0]
    ckpt = load(osp.join(tmp_path, 'iter_4.pth'))
    assert ckpt[CHECKPOINT_KEY]['best_state'] is None
    assert ckpt[CHECKPOINT_KEY]['scale'] == 0.0


def test_resume_takes_the_state_over_and_load_from_does_not(tmp_path):
    first, recorder, _ = make_runner(tmp_path / 'a', [50.0, 40.0], 4)
    first.train()
    best = recorder.states[2]
    ckpt = osp.join(tmp_path, 'a', 'iter_4.pth')

    # --resume: scale 0.5 from the start, best 50 at iteration 2; a score
    # of 45 at iteration 6 is a second drop: back to iteration 2's state
    resumed, _, hook = make_runner(tmp_path / 'b', [45.0], 6, resume=True,
                                   load_from=ckpt)
    resumed.train()
    assert resumed.model.scales == [0.5, 0.25]
    assert (hook.best_score, hook.best_iter, hook.backoffs) == (50.0, 2, 2)
    assert_state(resumed.model.state_dict(), best)

    # load_from only (a new run from iteration 0): a fresh safety net
    fresh, _, hook = make_runner(tmp_path / 'c', [45.0, 44.0, 43.0], 6,
                                 load_from=ckpt)
    fresh.train()
    assert fresh.model.scales == [1.0]
    assert (hook.best_score, hook.best_iter, hook.backoffs) == (45.0, 2, 0)


def test_validation_outside_training_changes_nothing(tmp_path):
    runner, _, hook = make_runner(tmp_path, [50.0, 10.0], 2)
    runner.train()
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.val()  # e.g. tools/test-style evaluation after training
    assert hook.best_score == 50.0 and hook.backoffs == 0
    assert_state(runner.model.state_dict(), before)


def test_missing_score_key_names_it_and_the_available_ones():
    hook = UnlabelledSafetyNetHook(score_keys=('teacher/seg/dice_lesion',
                                               'teacher/cls/acc'))
    with pytest.raises(KeyError, match=r"\['teacher/cls/acc'\] are not "
                       r"among the validation metrics \['teacher/cls/"
                       r"accuracy', 'teacher/seg/dice_lesion'\]"):
        hook.score({key: 1.0 for key in KEYS})
    assert UnlabelledSafetyNetHook(score_keys=KEYS).score(
        {KEYS[0]: 40.0, KEYS[1]: 60.0, 'other': 0.0}) == 50.0


@pytest.mark.parametrize('kwargs, match', [
    (dict(score_keys=()), 'at least one validation metric'),
    (dict(tolerance=-1), 'tolerance must be >= 0'),
    (dict(decay=1.0), r'decay must be in \[0, 1\)'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UnlabelledSafetyNetHook(**kwargs)


class PlainModel(BaseModel):
    """A model without ``set_unlabelled_scale``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    forward = ToyModel.forward


def test_model_without_the_interface_is_a_type_error(tmp_path):
    runner, _, _ = make_runner(tmp_path, [50.0], 2, model=PlainModel())
    with pytest.raises(TypeError, match='such as HermesSegmentor '
                       r'\(got PlainModel\)'):
        runner.train()


def test_a_run_without_validation_is_an_error(tmp_path):
    runner, _, _ = make_runner(tmp_path, [], 2, validate=False)
    with pytest.raises(ValueError, match='has no validation loop: set '
                       'val_dataloader, val_evaluator and val_cfg'):
        runner.train()


def test_registered():
    assert HOOKS.get('UnlabelledSafetyNetHook') is UnlabelledSafetyNetHook
