"""The teacher update: supervised warm-up copy, then an EMA step.

:func:`step_teacher` is the one place a teacher moves, whatever averaged
model type the config names (this module's fused
:class:`ForeachExponentialMovingAverage`, MMEngine's
``ExponentialMovingAverage`` or ``MomentumAnnealingEMA``): the warm-up copy
and the ``avg_parameters`` refresh are not part of the EMA class, so
swapping the EMA type keeps them.

:class:`ForeachExponentialMovingAverage` is MMEngine's EMA with one fused
update: ``mmengine.model.ExponentialMovingAverage`` calls ``lerp_`` once per
tensor (about 200 calls for a ResNet-18 model, several hundred kernel
launches on a GPU); this subclass updates every floating-point tensor with
a single ``torch._foreach_lerp_``, with exactly the same arithmetic and state
(``steps``, ``avg_parameters``), so checkpoints are interchangeable.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseAveragedModel, ExponentialMovingAverage

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


@torch.no_grad()
def step_teacher(teacher: BaseAveragedModel, student: nn.Module,
                 iteration: Optional[int], warmup_iters: int) -> None:
    """Move ``teacher`` towards ``student`` after a training step.

    During the supervised warm-up (``iteration < warmup_iters``) the
    teacher is a copy of the student: its pseudo-labels are not used yet,
    and an EMA started from the random initial weights would lag the
    student for ~1/momentum iterations after the warm-up. Afterwards it is
    one step of the averaged model (``teacher.update_parameters``).

    MMEngine's averaged model keeps a dict of views on the teacher's
    tensors, built once; a deep copy of the model (or anything that
    replaces those tensors, e.g. loading a checkpoint with ``assign``)
    would leave the dict pointing at stale tensors and the teacher silently
    frozen, so it is refreshed here.

    Args:
        teacher (BaseAveragedModel): The averaged model around the student.
        student (nn.Module): The model being trained.
        iteration (int, optional): The (0-based) iteration that just
            finished; None means "after the warm-up" (an EMA step).
        warmup_iters (int): Iterations of the warm-up copy.
    """
    teacher.avg_parameters = (
        teacher.module.state_dict() if teacher.update_buffers else dict(
            teacher.module.named_parameters()))
    if iteration is not None and iteration < warmup_iters:
        teacher.module.load_state_dict(student.state_dict())
        teacher.steps += 1
        return
    teacher.update_parameters(student)
