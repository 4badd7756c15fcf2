"""Forward passes that leave BatchNorm running statistics untouched.

Why: a semi-supervised student sees labelled images and strongly augmented
unlabelled views. If both share one forward, every BN layer's *running*
statistics (what the model uses in eval mode, and what an EMA teacher with
``update_buffers=True`` inherits) describe the mixture, while validation,
testing and the teacher's pseudo-labelling see clean images. Measured on
the ``crowded`` synthetic style (``research/warmup_collapse/README.md``):
the student trained this way predicted no lesion at all in eval mode during
the supervised warm-up, while the same weights with BN statistics
re-estimated on labelled images segmented normally.
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
