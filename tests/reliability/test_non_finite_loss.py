"""A NaN/Inf loss stops training before it reaches the weights
(:mod:`hermes_mm.models.utils.finite_losses`)."""
import math
import os

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from hermes_mm.models.segmentors import HermesSegmentor, MultiTaskSegmentor
from hermes_mm.models.utils.finite_losses import (FiniteLossesMixin,
                                                  NonFiniteLossError,
                                                  non_finite_terms)

BAD_ITER = 5  # 1-based, as in the log


class _Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index % 4)))


class _Model(FiniteLossesMixin, BaseModel):
    """Two loss terms; ``loss_aux`` becomes NaN on the BAD_ITER-th step."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.steps = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.steps += 1
        out = self.linear(torch.stack(inputs))
        aux = out.abs().mean()
        if self.steps == BAD_ITER:
            aux = aux * float('nan')
        return {'main.loss_mse': out.pow(2).mean(), 'main.loss_aux': aux,
                'main.acc': torch.tensor(float('nan'))}  # not a loss


def test_nan_stops_before_step_and_keeps_checkpoints(tmp_path):
    runner = Runner(
        model=_Model(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=8),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        default_scope='mmengine',
        experiment_name='non_finite_loss')
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    msg = str(err.value)
    assert f'at iteration {BAD_ITER} (1-based' in msg
    assert 'main.loss_aux=nan' in msg
    assert 'main.loss_mse' not in msg and 'main.acc' not in msg
    assert err.value.iteration == BAD_ITER
    assert list(err.value.terms) == ['main.loss_aux']
    assert isinstance(err.value, FloatingPointError)
    # checkpoints of iterations 2 and 4 are kept, the latest is iteration 4
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) \
        == ['iter_2.pth', 'iter_4.pth']
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_4.pth')
    # the failing batch did not change the weights: still those of iter 4
    saved = torch.load(tmp_path / 'iter_4.pth', weights_only=True)
    for key, value in runner.model.state_dict().items():
        assert torch.equal(saved['state_dict'][key], value), key
        assert torch.isfinite(value).all()


def test_segmentors_use_the_check():
    """Both segmentors route ``parse_losses`` through the mixin (before
    MMEngine's optimizer step). Built without ``__init__``: parse_losses
    needs no module state."""
    hub = MessageHub.get_current_instance()
    before = hub.runtime_info.get('iter')
    hub.update_info('iter', 41)
    try:
        check_segmentors()
    finally:
        hub.runtime_info.pop('iter', None)
        if before is not None:
            hub.update_info('iter', before)


def check_segmentors():
    losses = {'sup.seg.loss_ce': torch.tensor(0.5),
              'unsup.cls.loss_cls': torch.tensor(float('inf')),
              'unsup.pl.seg.reliable': torch.tensor(float('nan'))}
    for cls in (MultiTaskSegmentor, HermesSegmentor):
        assert cls.parse_losses is FiniteLossesMixin.parse_losses
        model = cls.__new__(cls)
        with pytest.raises(NonFiniteLossError) as err:
            model.parse_losses(dict(losses))
        assert err.value.iteration == 42
        assert err.value.terms == {'unsup.cls.loss_cls': math.inf}
        loss, log_vars = model.parse_losses(
            {'sup.seg.loss_ce': torch.tensor(0.5)})
        assert float(loss) == 0.5


def test_non_finite_terms():
    t = torch.tensor
    assert non_finite_terms({'loss': t(1.), 'a.loss_x': t(1.)}) == {}
    assert non_finite_terms({'loss': t(float('nan')),
                             'a.loss_x': t(float('-inf')),
                             'a.loss_y': t(2.)}) == {'a.loss_x': -math.inf}
    # only the sum overflowed: the total is named
    assert non_finite_terms({'loss': t(float('inf')), 'a.loss_x': t(1.)}) \
        == {'loss': math.inf}
    assert non_finite_terms({'acc': t(float('nan'))}) == {}
