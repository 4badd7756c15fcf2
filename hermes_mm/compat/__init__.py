"""Narrow fixes for the OpenMMLab stack on current PyTorch / mmcv-lite.

Each fix names its upstream issue in its module docstring and is applied
once, by :func:`apply`, when ``hermes_mm`` is imported, except
:mod:`gloo_teardown`, which the tools call at the end of a distributed
run.
"""
from . import (atomic_checkpoint, checkpoint, checkpoint_loading, dice_loss,
               gloo_teardown, image_loading, mmcv_ops)

_APPLIED = False


def apply() -> None:
    """Apply every compat fix (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    mmcv_ops.install()
    checkpoint.install()
    checkpoint_loading.install()
    atomic_checkpoint.install()
    image_loading.install()
    dice_loss.install()
    _APPLIED = True


__all__ = [
    'apply', 'atomic_checkpoint', 'checkpoint', 'checkpoint_loading',
    'dice_loss', 'gloo_teardown', 'image_loading', 'mmcv_ops'
]
