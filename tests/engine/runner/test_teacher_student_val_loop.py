"""Tests of TeacherStudentValLoop with a real Runner on a toy model: one
evaluation per network, prefixed metrics, ``predict_on`` restored (also when
a network fails), and plain ``ValLoop`` behaviour for other models."""
import time

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import hermes_mm  # noqa: F401  (registers the loop)
from hermes_mm.engine.runner import TeacherStudentValLoop

VALUES = [1.0, 2.0, 3.0, 6.0]  # mean 3
SCALES = dict(teacher=10.0, student=100.0)


class ValueDataset(Dataset):
    metainfo = dict(classes=('x', ))

    def __len__(self):
        return len(VALUES)

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([VALUES[index]]))


def collate(batch):
    return dict(inputs=torch.stack([b['inputs'] for b in batch]))


class PlainModel(BaseModel):
    """Predicts ``2 x``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))
        self.modes = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.modes.append(self.training)
        return list((inputs * self.weight).flatten().unbind())


class TeacherStudentModel(PlainModel):
    """Predicts ``scale[predict_on] x``, like HermesSegmentor delegates to
    the network named by ``predict_on``."""

    PREDICTORS = ('teacher', 'student')

    def __init__(self, predict_on='student', fail_on=None):
        super().__init__()
        self.predict_on = predict_on
        self.fail_on = fail_on
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.seen.append(self.predict_on)
        self.modes.append(self.training)
        if self.predict_on == self.fail_on:
            raise RuntimeError(f'{self.fail_on} failed')
        scale = SCALES[self.predict_on]
        return list((inputs * scale).flatten().unbind())


class MeanMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(float(x) for x in data_samples)

    def compute_metrics(self, results):
        return dict(mean=sum(results) / len(results), count=len(results))


class HookCalls(Hook):

    def __init__(self):
        self.calls = []

    def before_val_epoch(self, runner):
        self.calls.append(('before_val_epoch', None))

    def after_val_epoch(self, runner, metrics=None):
        self.calls.append(('after_val_epoch', dict(metrics)))


def make_runner(model, tmp_path, loop='TeacherStudentValLoop'):
    recorder = HookCalls()
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        experiment_name=f'tsvl_{time.time_ns()}',
        val_dataloader=DataLoader(ValueDataset(), batch_size=3,
                                  collate_fn=collate),
        val_cfg=dict(type=loop),
        val_evaluator=Evaluator([MeanMetric()]),
        custom_hooks=[recorder],
        default_hooks=dict(checkpoint=None),
        default_scope='mmseg')
    return runner, recorder


def test_metrics_prefixed_per_network(tmp_path):
    model = TeacherStudentModel(predict_on='student')
    runner, recorder = make_runner(model, tmp_path)
    assert isinstance(runner.val_loop, TeacherStudentValLoop)
    metrics = runner.val()
    mean = sum(VALUES) / len(VALUES)
    assert metrics == {
        'teacher/mean': SCALES['teacher'] * mean,
        'teacher/count': len(VALUES),
        'student/mean': SCALES['student'] * mean,
        'student/count': len(VALUES),
    }
    # Each network saw the whole set (2 batches), in eval mode.
    assert model.seen == ['teacher'] * 2 + ['student'] * 2
    assert model.modes == [False] * 4
    # One validation epoch for hooks, reporting all metrics at once.
    assert recorder.calls == [('before_val_epoch', None),
                              ('after_val_epoch', metrics)]
    assert model.predict_on == 'student'
    hub = runner.message_hub
    assert hub.get_scalar('val/teacher/mean').current() == 30.0
    assert hub.get_scalar('val/student/mean').current() == 300.0


def test_predict_on_restored_after_exception(tmp_path):
    model = TeacherStudentModel(predict_on='teacher', fail_on='student')
    runner, recorder = make_runner(model, tmp_path)
    with pytest.raises(RuntimeError, match='student failed'):
        runner.val()
    assert model.predict_on == 'teacher'
    assert ('after_val_epoch', {}) not in recorder.calls
    # ... and it validates normally afterwards.
    model.fail_on = None
    assert runner.val()['student/mean'] == 300.0
    assert model.predict_on == 'teacher'


def test_plain_model_falls_back_to_val_loop(tmp_path):
    model = PlainModel()
    runner, recorder = make_runner(model, tmp_path)
    metrics = runner.val()
    assert metrics == dict(mean=2 * sum(VALUES) / len(VALUES), count=4)
    assert recorder.calls == [('before_val_epoch', None),
                              ('after_val_epoch', metrics)]
    assert model.modes == [False, False]


def test_same_numbers_as_val_loop_for_each_network(tmp_path):
    """Prefixed metrics equal what ValLoop gives with predict_on fixed."""
    reference = {}
    for name in TeacherStudentModel.PREDICTORS:
        runner, _ = make_runner(
            TeacherStudentModel(predict_on=name), tmp_path / name, 'ValLoop')
        reference.update(
            {f'{name}/{k}': v for k, v in runner.val().items()})
    runner, _ = make_runner(TeacherStudentModel(), tmp_path / 'ts')
    assert runner.val() == reference
