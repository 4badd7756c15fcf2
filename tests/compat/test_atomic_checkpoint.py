"""Tests of crash-safe checkpoint saving
(:mod:`hermes_mm.compat.atomic_checkpoint`).

A crash is simulated by a ``torch.save`` that writes half of the file and
then raises a ``BaseException`` (as a kill would stop it mid-write). A real
SIGKILL mid-save is exercised end to end by
``tests/reliability/test_kill_resume.py``.
"""
import io
import os

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import checkpoint_hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner import checkpoint as checkpoint_module
from mmengine.runner import find_latest_checkpoint
from mmengine.runner import runner as runner_module
from torch.utils.data import Dataset

import hermes_mm  # noqa: F401  (applies compat)
from hermes_mm.compat import atomic_checkpoint


class _Crash(BaseException):
    """Stands for the process dying: not an ``Exception``."""


def half_save_then_crash(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    torch.serialization.save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[:len(data) // 2])
    f.flush()
    raise _Crash()


def test_install_patches_every_entry_point():
    patched = checkpoint_module.save_checkpoint
    assert getattr(patched, atomic_checkpoint._PATCH_FLAG)
    import mmengine.runner
    assert runner_module.save_checkpoint is patched
    assert mmengine.runner.save_checkpoint is patched
    assert checkpoint_hook.open is atomic_checkpoint._last_checkpoint_open
    for name in atomic_checkpoint.REMOVING_SAVERS:
        assert getattr(getattr(checkpoint_hook.CheckpointHook, name),
                       atomic_checkpoint._PATCH_FLAG)
    assert atomic_checkpoint.install()  # idempotent
    assert checkpoint_module.save_checkpoint is patched


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_2.pth')
    checkpoint_module.save_checkpoint({'w': torch.arange(3.)}, path)
    old = open(path, 'rb').read()
    monkeypatch.setattr(torch, 'save', half_save_then_crash)
    with pytest.raises(_Crash):
        checkpoint_module.save_checkpoint({'w': torch.zeros(1000)}, path)
    # the final name still holds the complete old file; no temp is left
    assert open(path, 'rb').read() == old
    assert os.listdir(tmp_path) == ['iter_2.pth']
    new = str(tmp_path / 'iter_4.pth')
    with pytest.raises(_Crash):
        checkpoint_module.save_checkpoint({'w': torch.zeros(1000)}, new)
    assert not os.path.exists(new)
    monkeypatch.undo()
    loaded = torch.load(path, weights_only=True)
    torch.testing.assert_close(loaded['w'], torch.arange(3.))


def test_only_local_paths_are_redirected(tmp_path):
    calls = []
    wrapped = atomic_checkpoint.atomic_save_checkpoint(
        lambda *args: calls.append(args[1]))
    wrapped({}, 's3://bucket/iter_2.pth')
    wrapped({}, 'work/iter_2.pth', None, dict(backend='petrel'))
    assert calls == ['s3://bucket/iter_2.pth', 'work/iter_2.pth']
    wrapped({'a': 1}, str(tmp_path / 'sub' / 'iter_2.pth'))
    assert len(calls) == 2
    assert torch.load(tmp_path / 'sub' / 'iter_2.pth') == {'a': 1}


def test_last_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / 'last_checkpoint'
    path.write_text('work/iter_2.pth')
    with pytest.raises(RuntimeError):
        with checkpoint_hook.open(str(path), 'w') as f:
            f.write('work/iter_')
            raise RuntimeError('killed while writing')
    assert path.read_text() == 'work/iter_2.pth'
    with checkpoint_hook.open(str(path), 'w') as f:
        f.write('work/iter_4.pth')
    assert path.read_text() == 'work/iter_4.pth'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']
    # any other file goes to the builtin open
    with checkpoint_hook.open(str(tmp_path / 'other'), 'w') as f:
        assert isinstance(f, io.TextIOWrapper)


class _ToyDataset(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)))


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=self.linear(torch.stack(inputs)).pow(2).mean())


def train_until_crash(runner, monkeypatch, record, crash_now):
    """Train ``runner`` with ``torch.save`` noting ``record(obj, f)`` for
    every save and dying half-way through the first one for which
    ``crash_now(records so far)``; returns the records and the ``.pth``
    files left in the work dir."""
    real_save = torch.save
    saves = []

    def save(obj, f, *args, **kwargs):
        saves.append(record(obj, f))
        if crash_now(saves):
            half_save_then_crash(obj, f)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', save)
    with pytest.raises(_Crash):
        runner.train()
    monkeypatch.undo()
    names = sorted(n for n in os.listdir(runner.work_dir)
                   if n.endswith('.pth'))
    return saves, names


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """max_keep_ckpts=1: MMEngine removed iter_2 *before* writing iter_4,
    so a crash then lost both. Now iter_2 and last_checkpoint survive."""
    runner = Runner(
        model=_ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=2, by_epoch=False,
                max_keep_ckpts=1)),
        default_scope='mmengine',
        experiment_name='atomic_checkpoint_crash')
    saves, names = train_until_crash(
        runner, monkeypatch, lambda obj, f: obj['meta']['iter'],
        lambda saves: len(saves) == 2)
    assert saves == [2, 4]
    assert names == ['iter_2.pth']
    latest = find_latest_checkpoint(str(tmp_path))
    assert latest == str(tmp_path / 'iter_2.pth')
    assert torch.load(latest, weights_only=True)['meta']['iter'] == 2


class _RisingMetric(BaseMetric):
    """'score' = the number of validations so far: every one is a best."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.calls += 1
        return dict(score=float(self.calls))


class _ToyValModel(_ToyModel):

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return super().forward(inputs, data_samples, mode)
        return [dict() for _ in inputs]


def _best_runner(work_dir, max_iters, name, **checkpoint):
    """A toy run validated every 2 iterations, each one a new best
    (``save_best='score'``); ``checkpoint``: more CheckpointHook args."""
    loader = dict(
        dataset=_ToyDataset(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        num_workers=0)
    return Runner(
        model=_ToyValModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=Evaluator([_RisingMetric()]),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=2),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, save_best='score',
                rule='greater', **checkpoint)),
        default_scope='mmengine',
        experiment_name=name)


def test_crash_during_best_save_keeps_previous_best(tmp_path, monkeypatch):
    """save_best: MMEngine removed best_score_iter_2 *before* writing
    best_score_iter_4, so a crash then left no best checkpoint."""
    runner = _best_runner(tmp_path, 4, 'atomic_best_checkpoint_crash',
                          interval=100, save_last=False)
    saves, names = train_until_crash(
        runner, monkeypatch,
        lambda obj, f: os.path.basename(getattr(f, 'name', '')),
        lambda saves: '.best_score_iter_4.pth.' in saves[-1])
    assert any('.best_score_iter_2.pth.' in n for n in saves)
    assert names == ['best_score_iter_2.pth']
    best = torch.load(tmp_path / names[0], weights_only=True)
    assert best['meta']['iter'] == 2


def test_best_save_still_removes_the_previous_best(tmp_path):
    """Without a crash the old best goes, as in MMEngine: one best file."""
    _best_runner(tmp_path, 6, 'atomic_best_checkpoint_ok', interval=2,
                 max_keep_ckpts=1).train()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert names == ['best_score_iter_6.pth', 'iter_6.pth']


def save_until_disk_full(obj, f, *args, **kwargs):
    """``torch.save`` into a file whose disk fills up after 100 bytes:
    torch reports it as ``inline_container.cc ... unexpected pos``, the
    ENOSPC ``OSError`` only in the exception's context."""
    import errno

    class FullDisk(io.RawIOBase):
        written = 0

        def writable(self):
            return True

        def write(self, data):
            self.written += len(data)
            if self.written > 100:
                raise OSError(errno.ENOSPC, 'No space left on device')
            f.write(data)
            return len(data)

    torch.serialization.save(obj, FullDisk())


def test_disk_full_names_checkpoint_and_free_space(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_4.pth')
    checkpoint_module.save_checkpoint({'w': torch.arange(3.)}, path)
    old = open(path, 'rb').read()
    monkeypatch.setattr(torch, 'save', save_until_disk_full)
    with pytest.raises(atomic_checkpoint.CheckpointDiskFullError) as err:
        checkpoint_module.save_checkpoint({'w': torch.zeros(1000)}, path)
    msg = str(err.value)
    assert 'No space left on device while saving checkpoint' in msg
    assert repr(path) in msg and 'free of' in msg
    assert 'previous checkpoints and last_checkpoint are intact' in msg
    assert err.value.errno == 28 and err.value.filename == path
    assert 'unexpected pos' in str(err.value.__cause__)  # torch's message
    assert open(path, 'rb').read() == old
    assert os.listdir(tmp_path) == ['iter_4.pth']  # no partial .tmp left


def test_other_save_errors_pass_through(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('something else')
    monkeypatch.setattr(torch, 'save', broken)
    with pytest.raises(RuntimeError, match='something else'):
        checkpoint_module.save_checkpoint({}, str(tmp_path / 'a.pth'))
