"""MMEngine's exponential moving average with one fused update.

``mmengine.model.ExponentialMovingAverage`` calls ``lerp_`` once per tensor
(about 200 calls for a ResNet-18 model, several hundred kernel launches on a
GPU); this subclass updates every floating-point tensor with a single
``torch._foreach_lerp_``, with exactly the same arithmetic and state
(``steps``, ``avg_parameters``), so checkpoints are interchangeable.
"""
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

from hermes_mm.registry import MODELS


@MODELS.register_module()
class ForeachExponentialMovingAverage(ExponentialMovingAverage):
    """``ExponentialMovingAverage`` with a fused (``_foreach``) update.

    ``averaged = (1 - momentum) * averaged + momentum * source`` for every
    floating-point parameter (and buffer, with ``update_buffers=True``);
    the first update copies the source. Arguments as in MMEngine.
    """

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step towards ``model``."""
        source = (
            model.state_dict()
            if self.update_buffers else dict(model.named_parameters()))
        if self.steps == 0:
            for key, averaged in self.avg_parameters.items():
                averaged.data.copy_(source[key].data)
        elif self.steps % self.interval == 0:
            keys = [
                key for key, averaged in self.avg_parameters.items()
                if averaged.dtype.is_floating_point
            ]
            averaged = [self.avg_parameters[key].data for key in keys]
            torch._foreach_lerp_(
                averaged,
                [
                    source[key].data.to(a.device)
                    for key, a in zip(keys, averaged)
                ],
                self.momentum)
        if not self.update_buffers:
            for b_avg, b_src in zip(self.module.buffers(), model.buffers()):
                b_avg.data.copy_(b_src.data.to(b_avg.device))
        self.steps += 1
