"""Fixtures of the research-script tests."""
import json
import os
import os.path as osp

import mmengine.config.config as mmengine_config
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')


@pytest.fixture
def tiny_hermes_run(tmp_path, monkeypatch):
    """``(run folder, model)``: a finished ``quality.py``-style run of the
    tiny Hermes config at ``tmp_path/crowded/runs/hermes/r0.125/seed0``
    (``config.py``, ``last_checkpoint``, ``heldout_metrics.json``), whose
    checkpoint's teacher differs from its student, so that a script reading
    the wrong network fails."""
    monkeypatch.setattr(mmengine_config, 'FormatCode',
                        lambda text, **kwargs: (text, False))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY_HERMES).model)
    model.init_weights()
    with torch.no_grad():
        for p in model.teacher.module.parameters():
            p.add_(0.02 * torch.randn_like(p))
    run = osp.join(str(tmp_path), 'crowded', 'runs', 'hermes', 'r0.125',
                   'seed0')
    os.makedirs(run)
    ckpt = osp.join(run, 'iter_2.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    with open(osp.join(run, 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    with open(osp.join(run, 'config.py'), 'w') as f:
        f.write(f'_base_ = {TINY_HERMES!r}\n')
    with open(osp.join(run, 'heldout_metrics.json'), 'w') as f:
        json.dump({}, f)
    return run, model
