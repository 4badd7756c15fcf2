"""Forward passes that leave BatchNorm running statistics untouched.

Why: a semi-supervised student sees labelled images and strongly augmented
unlabelled views. If both share one forward, the strong views enter the
labelled images' BN batch statistics (so they change the supervised
gradients even while every unlabelled loss weight is 0) and every BN
layer's *running* statistics (what eval mode uses, and what an EMA teacher
with ``update_buffers=True`` inherits). Forwarding the strong views in a
second pass inside :func:`frozen_bn_running_stats` removes both paths. On
the ``crowded`` synthetic style the joint forward slowed the supervised
warm-up's learning of the lesion (validation lesion Dice 0.0 and 7.5 at
iteration 200 against 30.9 and 41.6 with two forwards); re-estimating the
running statistics alone did not undo it, so the batch statistics during
training are what mattered (``research/warmup_collapse/README.md``).
Hermes uses it with ``joint_student_forward=False`` (the supervised
twin's path); its default is the joint forward again, which issue 20's
2400-iteration test adopted (``docs/method.md`` section 2).
"""
from contextlib import contextmanager
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['frozen_bn_running_stats']


@contextmanager
def frozen_bn_running_stats(module: nn.Module) -> Iterator[nn.Module]:
    """Run forwards in train mode without updating BN running statistics.

    Inside the context every ``_BatchNorm`` (incl. ``SyncBatchNorm``) of
    ``module`` still normalises with the statistics of the current batch
    (train mode), and gradients flow as usual; only ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` keep their values. Done by
    setting ``momentum=0`` (``running = (1 - 0) * running + 0 * batch``),
    which works with every BN implementation that honours ``momentum`` and
    keeps the collective calls of SyncBN unchanged (no DDP divergence).
    ``momentum=None`` (cumulative average) layers are switched to 0 as well
    and restored afterwards.

    Args:
        module (nn.Module): Model whose BN layers are frozen.

    Yields:
        nn.Module: ``module``.
    """
    layers = [(m, m.momentum, m.num_batches_tracked.clone()
               if m.num_batches_tracked is not None else None)
              for m in module.modules()
              if isinstance(m, _BatchNorm) and m.track_running_stats]
    for layer, _, _ in layers:
        layer.momentum = 0.0
    try:
        yield module
    finally:
        for layer, momentum, tracked in layers:
            layer.momentum = momentum
            if tracked is not None:
                layer.num_batches_tracked.copy_(tracked)
