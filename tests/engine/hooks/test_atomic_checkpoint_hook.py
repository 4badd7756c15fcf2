"""Tests of crash-safe checkpoint saving
(hermes_mm/engine/hooks/atomic_checkpoint_hook.py).

A crash is simulated by a write that puts half of the file on disk and then
raises a ``BaseException`` (as a kill would stop it mid-write). A real
SIGKILL mid-save is exercised end to end by
``tests/reliability/test_kill_resume.py``.
"""
import errno
import io
import os

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.model import BaseModel
from mmengine.runner import Runner, find_latest_checkpoint
from torch.utils.data import Dataset

from hermes_mm.engine.hooks import atomic_checkpoint_hook as ach
from hermes_mm.engine.hooks.atomic_checkpoint_hook import (
    ATOMIC_LOCAL_BACKEND, AtomicCheckpointHook, AtomicLocalBackend,
    CheckpointDiskFullError, atomic_write)


class _Crash(BaseException):
    """Stands for the process dying: not an ``Exception``."""


def half_write_then_crash(data):
    """A ``write`` for :func:`atomic_write` that dies half-way."""

    def write(f):
        f.write(data[:len(data) // 2])
        f.flush()
        raise _Crash()

    return write


def test_backend_is_registered_and_selected_by_the_hook(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend=ATOMIC_LOCAL_BACKEND))
    assert isinstance(backend, AtomicLocalBackend)
    assert isinstance(backend, LocalBackend)
    # a plain path still gets MMEngine's own backend
    assert type(get_file_backend(str(tmp_path))) is LocalBackend


def test_crash_mid_write_keeps_old_file(tmp_path):
    path = str(tmp_path / 'iter_2.pth')
    backend = AtomicLocalBackend()
    backend.put(b'old checkpoint', path)
    with pytest.raises(_Crash):
        atomic_write(path, half_write_then_crash(b'x' * 1000))
    # the final name still holds the complete old file; no temp is left
    assert open(path, 'rb').read() == b'old checkpoint'
    assert os.listdir(tmp_path) == ['iter_2.pth']
    new = str(tmp_path / 'iter_4.pth')
    with pytest.raises(_Crash):
        atomic_write(new, half_write_then_crash(b'x' * 1000))
    assert not os.path.exists(new)
    backend.put(b'new', str(tmp_path / 'sub' / 'iter_6.pth'))  # makes dirs
    assert (tmp_path / 'sub' / 'iter_6.pth').read_bytes() == b'new'


def test_last_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / 'last_checkpoint'
    path.write_text('work/iter_2.pth')
    with pytest.raises(_Crash):
        atomic_write(str(path), half_write_then_crash(b'work/iter_4.pth'))
    assert path.read_text() == 'work/iter_2.pth'
    AtomicLocalBackend().put_text('work/iter_4.pth', str(path))
    assert path.read_text() == 'work/iter_4.pth'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']


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


def train_until_crash(runner, monkeypatch, crash_now):
    """Train ``runner``, noting the name of every ``.pth`` file the atomic
    backend writes and dying half-way through the first one for which
    ``crash_now(names so far)``; returns the names and the ``.pth`` files
    left in the work dir."""
    real_put = AtomicLocalBackend.put
    saves = []

    def put(self, obj, filepath):
        name = os.path.basename(str(filepath))
        if name.endswith('.pth'):
            saves.append(name)
            if crash_now(saves):
                atomic_write(str(filepath), half_write_then_crash(obj))
        real_put(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', put)
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
                type='AtomicCheckpointHook', interval=2, by_epoch=False,
                max_keep_ckpts=1)),
        default_scope='mmseg',  # hermes_mm registers into mmseg
        experiment_name='atomic_checkpoint_crash')
    saves, names = train_until_crash(runner, monkeypatch,
                                     lambda saves: len(saves) == 2)
    assert saves == ['iter_2.pth', 'iter_4.pth']
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
                type='AtomicCheckpointHook', by_epoch=False,
                save_best='score', rule='greater', **checkpoint)),
        default_scope='mmseg',
        experiment_name=name)


def test_crash_during_best_save_keeps_previous_best(tmp_path, monkeypatch):
    """save_best: MMEngine removed best_score_iter_2 *before* writing
    best_score_iter_4, so a crash then left no best checkpoint."""
    runner = _best_runner(tmp_path, 4, 'atomic_best_checkpoint_crash',
                          interval=100, save_last=False)
    saves, names = train_until_crash(
        runner, monkeypatch,
        lambda saves: saves[-1] == 'best_score_iter_4.pth')
    assert 'best_score_iter_2.pth' in saves
    assert names == ['best_score_iter_2.pth']
    best = torch.load(tmp_path / names[0], weights_only=True)
    assert best['meta']['iter'] == 2


def test_best_save_still_removes_the_previous_best(tmp_path):
    """Without a crash the old best goes, as in MMEngine: one best file."""
    _best_runner(tmp_path, 6, 'atomic_best_checkpoint_ok', interval=2,
                 max_keep_ckpts=1).train()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert names == ['best_score_iter_6.pth', 'iter_6.pth']


def test_config_selects_the_atomic_hook(tmp_path):
    """``type='AtomicCheckpointHook'`` builds it and it writes through the
    atomic backend; a plain ``CheckpointHook`` is MMEngine's own."""
    hook = CheckpointHook(interval=1)
    assert not isinstance(hook, AtomicCheckpointHook)
    runner = Runner(
        model=_ToyModel(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=_ToyDataset(),
                              sampler=dict(type='DefaultSampler'),
                              batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook',
                                           interval=1, by_epoch=False)),
        default_scope='mmseg',
        experiment_name='atomic_checkpoint_selected')
    runner.train()
    hook = next(h for h in runner.hooks
                if isinstance(h, AtomicCheckpointHook))
    assert hook.atomic and isinstance(hook.file_backend, AtomicLocalBackend)
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'iter_1.pth')
    # explicit backend_args (e.g. petrel) keep MMEngine's backend
    other = AtomicCheckpointHook(backend_args=dict(backend='local'))
    other.before_train(runner)
    assert not other.atomic


def save_until_disk_full(obj, f, *args, **kwargs):
    """``torch.save`` into a file whose disk fills up after 100 bytes:
    torch reports it as ``inline_container.cc ... unexpected pos``, the
    ENOSPC ``OSError`` only in the exception's context."""

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


def test_disk_full_names_checkpoint_and_free_space(tmp_path):
    path = str(tmp_path / 'iter_4.pth')
    AtomicLocalBackend().put(b'old', path)
    with pytest.raises(CheckpointDiskFullError) as err:
        atomic_write(path, lambda f: save_until_disk_full(
            {'w': torch.zeros(1000)}, f))
    msg = str(err.value)
    assert 'No space left on device while saving checkpoint' in msg
    assert repr(path) in msg and 'free of' in msg
    assert 'previous checkpoints and last_checkpoint are intact' in msg
    assert err.value.errno == 28 and err.value.filename == path
    assert 'unexpected pos' in str(err.value.__cause__)  # torch's message
    assert open(path, 'rb').read() == b'old'
    assert os.listdir(tmp_path) == ['iter_4.pth']  # no partial .tmp left


def test_disk_full_in_a_plain_write(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(CheckpointDiskFullError):
        atomic_write(str(tmp_path / 'iter_2.pth'), full)
    assert os.listdir(tmp_path) == []


def test_other_save_errors_pass_through(tmp_path):
    def broken(f):
        raise RuntimeError('something else')

    with pytest.raises(RuntimeError, match='something else'):
        atomic_write(str(tmp_path / 'a.pth'), broken)
    assert ach.TMP_SUFFIX == '.tmp' and os.listdir(tmp_path) == []
