"""Fixtures of the research-script tests."""
import importlib
import json
import os
import os.path as osp
import sys

import mmengine.config.config as mmengine_config
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

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


@pytest.fixture(scope='module')
def spy(load_script):
    """``spy(monkeypatch, obj, name)``: record (args, result) of every
    call (the segmentor tests' helper)."""
    return load_script(
        'tests/models/segmentors/test_hermes_segmentor.py').spy


@pytest.fixture(scope='module')
def research_module():
    """``research_module('research.pkg.mod')``: a research module, imported
    as the research configs' ``custom_imports`` do with ``PYTHONPATH=.``."""
    def load(name):
        sys.path.insert(0, REPO)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(REPO)

    return load


def make_step_batch(size):
    """One seeded Hermes training batch of ``size`` x ``size`` images: 2
    labelled (benign with a square lesion, normal) and 3 unlabelled images
    (weak and strong views, no annotation)."""
    g = torch.Generator().manual_seed(0)
    meta = dict(img_shape=(size, size), ori_shape=(size, size),
                pad_shape=(size, size))

    def sample(label=None):
        s = SegDataSample(metainfo=meta)
        if label is not None:
            mask = torch.zeros(1, size, size, dtype=torch.long)
            mask[0, 10:30, 10:30] = int(label != 2)
            s.gt_sem_seg = PixelData(data=mask)
            s.gt_label = torch.tensor([label])
        return s

    inputs = dict(sup=torch.randn(2, 3, size, size, generator=g),
                  unsup_weak=torch.randn(3, 3, size, size, generator=g),
                  unsup_strong=torch.randn(3, 3, size, size, generator=g))
    data_samples = dict(sup=[sample(0), sample(2)],
                        unsup_weak=[sample() for _ in range(3)],
                        unsup_strong=[sample() for _ in range(3)])
    return inputs, data_samples


@pytest.fixture(scope='module')
def step_batch():
    """``step_batch(size)``: :func:`make_step_batch`."""
    return make_step_batch


#: the CPU demo model (``configs/_base_/models``) the wiring tests build
SMALL = osp.join(REPO, 'configs', '_base_', 'models',
                 'hermes_r18_small_itas.py')


def small_research_model(research_cfg, size, **model_keys):
    """The small demo Hermes as the research config's model type, with
    ``model_keys`` set on the model config (dotted keys reach into nested
    dicts: ``'pseudo_labeler.cls_threshold'``), inputs of ``size`` x ``size``,
    a teacher perturbed away from its student (so a term that reads the
    wrong network fails), after every ramp-up, in train mode."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(SMALL).model
    cfg.type = Config.fromfile(research_cfg).model.type
    cfg.data_preprocessor.data_preprocessor.size = (size, size)
    for key, value in model_keys.items():
        *parents, leaf = key.split('.')
        node = cfg
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():
        for p in model.teacher.module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.set_iteration(10**6)
    model.train()
    return model


@pytest.fixture(scope='module')
def small_model():
    """``small_model(research_cfg, size, **model_keys)``:
    :func:`small_research_model`."""
    return small_research_model
