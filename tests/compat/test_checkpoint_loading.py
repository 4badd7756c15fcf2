"""Tests of checkpoint loading errors, weights-only URL loading and
resume without executing config text
(:func:`hermes_mm.compat.checkpoint_loading.install`, which the tools call).
"""
import os
import os.path as osp
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint, load_from_http
from torch.utils.data import Dataset

from hermes_mm.compat import checkpoint_loading
from hermes_mm.compat.checkpoint_loading import (CorruptCheckpointError,
                                                 UnsafeCheckpointError)


@pytest.fixture(autouse=True, scope='module')
def installed():
    """What tools/train.py, tools/test.py and tools/infer.py do first."""
    checkpoint_loading.install()


class RunsCommand:
    """Pickles as a call to ``os.system`` (the classic payload)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class Gadget:
    """An arbitrary class of someone's code base."""

    def __init__(self):
        self.x = 1


@pytest.fixture
def good(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save({'state_dict': {'weight': torch.ones(1, 2),
                               'bias': torch.zeros(1)},
                'meta': {'iter': 2}}, path)
    return path


def test_weights_only_checkpoint_loads(good):
    model = nn.Linear(2, 1)
    load_checkpoint(model, str(good))
    torch.testing.assert_close(model.weight, torch.ones(1, 2))


@pytest.mark.parametrize('cut', ['half', 'empty', 'garbage'])
def test_corrupt_checkpoint_names_the_file(good, tmp_path, cut):
    data = good.read_bytes()
    content = dict(half=data[:len(data) // 2], empty=b'',
                   garbage=b'<html>502 Bad Gateway</html>')[cut]
    path = tmp_path / f'iter_4_{cut}.pth'
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError) as err:
        _load_checkpoint(str(path), map_location='cpu')
    msg = str(err.value)
    assert repr(str(path)) in msg
    assert 'expected a complete file written by torch.save' in msg
    assert 'truncated, empty or not a checkpoint' in msg


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(str(tmp_path / 'nope.pth'))


def test_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': RunsCommand(f'touch "{marker}"')},
               path)
    model = nn.Linear(2, 1)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(model, str(path))
    msg = str(err.value)
    assert repr(str(path)) in msg
    # os.system pickles under its real module: posix.system / nt.system
    assert f"'{os.system.__module__}.system'" in msg
    assert 'not on the weights-only allow-list' in msg
    assert 'Nothing from the file was run' in msg
    assert isinstance(err.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_arbitrary_class_is_refused(tmp_path):
    path = tmp_path / 'gadget.pth'
    torch.save({'meta': Gadget()}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(str(path))
    assert f"'{Gadget.__module__}.Gadget'" in str(err.value)


def test_url_checkpoints_are_weights_only_too(good, tmp_path):
    """``http(s)://``, ``torchvision://`` and ``open-mmlab://`` go through
    ``load_url`` (torch.hub), which is not weights-only by default; a
    ``file://`` URL takes the same download-then-load path offline."""
    cache = tmp_path / 'cache'
    loaded = load_from_http(good.as_uri(), model_dir=str(cache))
    assert loaded['meta'] == {'iter': 2}
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil_url.pth'
    torch.save({'meta': RunsCommand(f'touch "{marker}"')}, evil)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_from_http(evil.as_uri(), model_dir=str(cache))
    assert evil.as_uri() in str(err.value)
    assert not marker.exists()


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=self.linear(torch.stack(inputs)).pow(2).mean())


class _Data(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.ones(2))


def _toy_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=_Toy(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Data(), sampler=dict(type='DefaultSampler'),
            batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=1, by_epoch=False)),
        default_scope='mmengine',
        # distinct per runner: two runners in one second share a name
        experiment_name=f'resume_{osp.basename(str(work_dir))}',
        **kwargs)


def test_resume_never_executes_a_config_text(tmp_path):
    """A weights-only-clean checkpoint (strings and tensors) whose
    ``meta['config']`` is Python: MMEngine's resume would exec it."""
    _toy_runner(tmp_path / 'first', 1).train()
    checkpoint = torch.load(tmp_path / 'first' / 'iter_1.pth',
                            weights_only=True)
    marker = tmp_path / 'pwned'
    checkpoint['meta']['config'] = (
        f"x = __import__('os').system('touch {marker}')\n")
    path = tmp_path / 'crafted.pth'
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True)  # passes weights-only loading
    runner = _toy_runner(tmp_path / 'second', 2, load_from=str(path),
                         resume=True)
    runner.train()
    assert runner.iter == 2
    assert not marker.exists()
    assert 'load_checkpoint' not in vars(runner)  # the class method again
