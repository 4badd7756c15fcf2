"""Tests of hermes_mm.apis.resume: ``--resume`` never starts over
silently, falls back to the newest complete ``iter_*.pth``, and a
checkpoint that no longer fits the model is named before torch fails."""
import types

import pytest
import torch
from mmengine.config import Config
from torch import nn

from hermes_mm.apis.resume import (CheckpointMismatchError,
                                   NothingToResumeError,
                                   check_resume_compatible, resolve_resume,
                                   saved_config)


def cfg_for(work_dir, **extra):
    return Config(dict(work_dir=str(work_dir), load_from=None, **extra))


def save(path, state=None, **extra):
    torch.save(dict(state_dict=state or {'w': torch.zeros(2)}, **extra),
               str(path))
    return str(path)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    cfg = cfg_for(tmp_path / 'typo')
    with pytest.raises(NothingToResumeError) as err:
        resolve_resume(cfg, True)
    msg = str(err.value)
    assert 'nothing to resume' in msg and 'does not exist' in msg
    assert 'Check --work-dir' in msg and '--resume auto' in msg
    (tmp_path / 'empty').mkdir()
    with pytest.raises(NothingToResumeError, match='holds no checkpoint'):
        resolve_resume(cfg_for(tmp_path / 'empty'), True)


def test_resume_auto_starts_from_scratch(tmp_path):
    cfg = cfg_for(tmp_path)
    assert resolve_resume(cfg, 'auto') is None
    assert cfg.resume is False


def test_last_checkpoint_is_left_to_mmengine(tmp_path):
    ckpt = save(tmp_path / 'iter_4.pth')
    (tmp_path / 'last_checkpoint').write_text(ckpt)
    cfg = cfg_for(tmp_path)
    assert resolve_resume(cfg, True) == ckpt
    assert cfg.resume is True and cfg.load_from is None


def test_missing_last_checkpoint_picks_newest_complete(tmp_path, capsys):
    save(tmp_path / 'iter_2.pth')
    good = save(tmp_path / 'iter_4.pth')
    (tmp_path / 'iter_6.pth').write_bytes(b'PK\x03\x04 truncated')
    save(tmp_path / 'iter_10_extra.pth')  # not a scheduled name
    cfg = cfg_for(tmp_path)
    assert resolve_resume(cfg, True) == good
    assert cfg.resume is True and cfg.load_from == good


def test_resume_path(tmp_path):
    ckpt = save(tmp_path / 'x.pth')
    cfg = cfg_for(tmp_path / 'w')
    assert resolve_resume(cfg, ckpt) == ckpt and cfg.load_from == ckpt
    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        resolve_resume(cfg, str(tmp_path / 'nope.pth'))
    assert resolve_resume(cfg, False) is None and cfg.resume is False


def test_saved_config_is_parsed_not_run():
    text = ("model = dict(type='M', backbone=dict(depth=18, "
            "out=(1, 2)), lr=-0.1)\nimport os\nx = os.system('echo hi')\n")
    out = saved_config(text)
    assert out == {'model': {'type': 'M', 'backbone': {
        'depth': 18, 'out': [1, 2]}, 'lr': -0.1}}


def test_shape_change_is_named_before_torch_fails(tmp_path):
    old_cfg = "model = dict(type='Toy', width=4, head=dict(num_classes=2))"
    ckpt = save(tmp_path / 'iter_2.pth',
                {'body.weight': torch.zeros(4, 3), 'body.bias': torch.zeros(4),
                 'extra.weight': torch.zeros(1)},
                meta=dict(cfg=old_cfg))
    model = nn.Module()
    model.body = nn.Linear(3, 8)
    model.head = nn.Linear(8, 2)
    runner = types.SimpleNamespace(
        model=model, work_dir=str(tmp_path),
        cfg=Config(dict(model=dict(type='Toy', width=8,
                                   head=dict(num_classes=2)))))
    with pytest.raises(CheckpointMismatchError) as err:
        check_resume_compatible(runner, ckpt)
    msg = str(err.value)
    assert repr(ckpt) in msg
    assert 'body.weight (4, 3) (checkpoint) vs (8, 3) (model)' in msg
    assert 'body.bias (4,) (checkpoint) vs (8,) (model)' in msg
    assert "model key(s) not in the checkpoint: head.weight, head.bias" in msg
    assert 'checkpoint key(s) not in the model: extra.weight' in msg
    assert 'model.width: 4 (checkpoint) -> 8 (now)' in msg
    # a fitting checkpoint passes, also through last_checkpoint
    fit = save(tmp_path / 'iter_4.pth', model.state_dict())
    (tmp_path / 'last_checkpoint').write_text(fit)
    check_resume_compatible(runner, None)
