"""Tests of weights-only checkpoint loading: the allow-list that
``import hermes_mm`` registers (:mod:`hermes_mm.compat.checkpoint_loading`).

A tiny MMEngine Runner trains a toy model, saves, and resumes with
``torch.load``'s weights-only default, and crafted files are refused.
"""
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

import hermes_mm  # noqa: F401  (registers the allow-list)
from hermes_mm.compat import checkpoint_loading as ckpt_compat

SAVE_INTERVAL = 2
FIRST_ITERS = 4
RESUMED_ITERS = 6


class _ToyDataset(Dataset):
    """Eight seeded (input, target) pairs of a linear problem."""

    def __init__(self, length: int = 8, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(length, 4, generator=gen)
        self.targets = self.inputs.sum(1, keepdim=True)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(
            inputs=self.inputs[index], data_samples=self.targets[index])


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        pred = self.linear(inputs)
        if mode == 'loss':
            target = torch.stack(data_samples) if isinstance(
                data_samples, list) else data_samples
            return dict(loss=((pred - target)**2).mean())
        return pred


class _RecordIters(Hook):
    """Records the iteration index seen before each training step."""

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append(runner.iter)


def _runner(work_dir, max_iters, **kwargs):
    recorder = _RecordIters()
    runner = Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=SAVE_INTERVAL,
                by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[recorder],
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kwargs)
    return runner, recorder


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Work dir of a 4-iteration run that saved at iterations 2 and 4."""
    work_dir = tmp_path_factory.mktemp('ckpt_run')
    runner, recorder = _runner(work_dir, FIRST_ITERS)
    runner.train()
    assert recorder.seen == list(range(FIRST_ITERS))
    return work_dir, runner.model.state_dict()


def test_runner_checkpoint_loads_weights_only(trained):
    work_dir, state = trained
    path = work_dir / f'iter_{FIRST_ITERS}.pth'
    assert path.is_file()
    assert (work_dir / f'iter_{SAVE_INTERVAL}.pth').is_file()
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    assert loaded['meta']['iter'] == FIRST_ITERS
    for key, value in state.items():
        torch.testing.assert_close(loaded['state_dict'][key], value)
    # The message hub holds HistoryBuffers: what the allow-list exists for.
    buffers = loaded['message_hub']['log_scalars']
    assert isinstance(buffers['train/loss'], HistoryBuffer)
    assert len(buffers['train/loss'].data[0]) == FIRST_ITERS


def test_runner_checkpoint_needs_the_allow_list(trained):
    """Without the allow-list the same file is refused, so the test above
    really exercises it (and weights-only stays on)."""
    work_dir, _ = trained
    saved = list(torch.serialization.get_safe_globals())
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError):
            torch.load(work_dir / f'iter_{FIRST_ITERS}.pth',
                       map_location='cpu', weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def test_runner_resumes_from_checkpoint(trained, tmp_path):
    work_dir, state = trained
    runner, recorder = _runner(
        tmp_path, RESUMED_ITERS, resume=True,
        load_from=str(work_dir / f'iter_{FIRST_ITERS}.pth'))
    runner.train()
    assert recorder.seen == list(range(FIRST_ITERS, RESUMED_ITERS))
    assert runner.iter == RESUMED_ITERS
    # The message hub was restored: the loss history spans both runs.
    history = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(history) == RESUMED_ITERS
    assert (tmp_path / f'iter_{RESUMED_ITERS}.pth').is_file()


def test_numpy_values_load_under_both_numpy_spellings():
    """Checkpoints written under numpy 1 record ``numpy.core.multiarray``,
    under numpy 2 ``numpy._core.multiarray``: both must load."""
    obj = {'array': np.arange(3), 'scalar': np.float64(2.5)}
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    spellings = {b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n'}
    written = [s for s in spellings if s in raw]
    assert len(written) == 1
    other = (spellings - set(written)).pop()
    for data in (raw, raw.replace(written[0], other)):
        loaded = torch.load(io.BytesIO(data), weights_only=True)
        np.testing.assert_array_equal(loaded['array'], np.arange(3))
        assert loaded['scalar'] == 2.5


def test_restricted_getattr():
    assert ckpt_compat.restricted_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        ckpt_compat.restricted_getattr(os, 'system')
    with pytest.raises(pickle.UnpicklingError):
        ckpt_compat.restricted_getattr(HistoryBuffer, '__init__')


class _Evil:
    """Pickles as a call to ``os.system``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class _EvilGetattr:
    """Pickles as ``builtins.getattr(HistoryBuffer, '__init__')``: uses the
    allow-listed ``getattr`` spelling for a disallowed attribute."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_crafted_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Evil(f'touch "{marker}"')}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    # The loader MMEngine's Runner uses is weights-only too.
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_crafted_getattr_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'evil_getattr.pth'
    torch.save({'meta': _EvilGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(path, weights_only=True)


def test_install_reports_support():
    assert ckpt_compat.register_safe_globals() is \
        ckpt_compat.supports_weights_only()
    names = {
        entry[1] if isinstance(entry, tuple) else
        f'{entry.__module__}.{entry.__qualname__}'
        for entry in torch.serialization.get_safe_globals()
    }
    assert 'builtins.getattr' in names
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
