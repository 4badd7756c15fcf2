"""ForeachExponentialMovingAverage == MMEngine's ExponentialMovingAverage."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

from hermes_mm.models.utils.foreach_ema import ForeachExponentialMovingAverage


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize('update_buffers', [True, False])
@pytest.mark.parametrize('interval', [1, 2])
def test_same_state_as_mmengine_ema(update_buffers, interval):
    source = _net()
    reference = ExponentialMovingAverage(
        source, momentum=0.3, interval=interval,
        update_buffers=update_buffers)
    fused = ForeachExponentialMovingAverage(
        copy.deepcopy(source), momentum=0.3, interval=interval,
        update_buffers=update_buffers)
    fused.module.load_state_dict(reference.module.state_dict())
    for step in range(5):
        with torch.no_grad():
            for p in source.parameters():
                p.add_(torch.randn_like(p))
        source.train()
        source(torch.randn(2, 3, 8, 8))  # moves BN running statistics
        reference.update_parameters(source)
        fused.update_parameters(source)
    assert int(fused.steps) == int(reference.steps) == 5
    ref_state = reference.state_dict()
    for key, value in fused.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], msg=key)
    # non-vacuous: the average differs from the source
    assert not torch.allclose(fused.module[0].weight, source[0].weight)


def test_first_update_copies_the_source():
    source = _net()
    fused = ForeachExponentialMovingAverage(copy.deepcopy(source),
                                            momentum=0.1)
    with torch.no_grad():
        for p in source.parameters():
            p.mul_(3)
    fused.update_parameters(source)
    torch.testing.assert_close(fused.module[0].weight, source[0].weight)
