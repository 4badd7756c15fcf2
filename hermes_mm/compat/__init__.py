"""Narrow fixes for the OpenMMLab stack on current PyTorch / mmcv-lite.

``import hermes_mm`` calls :func:`apply`, which only *adds* what the stack
needs to import and load checkpoints at all: the CPU fallback ``mmcv.ops``
on mmcv-lite (:mod:`mmcv_ops`, never shadowing a real mmcv) and the
weights-only allow-list of MMEngine's checkpoint contents
(:func:`checkpoint_loading.register_safe_globals`). It replaces no
function or class of MMEngine, MMCV or MMSegmentation. The other fixes are
explicit: configs name the registered components (``AtomicCheckpointHook``,
``IgnoreIndexDiceLoss``, ``LoadImageAsStored``), the tools call
:func:`checkpoint_loading.install` (explained loading errors, weights-only
URLs, no executed config text) and, at the end of a distributed run,
:mod:`gloo_teardown`.
"""
from . import checkpoint_loading, gloo_teardown, mmcv_ops

_APPLIED = False


def apply() -> None:
    """Apply the import-time fixes (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    mmcv_ops.install()
    checkpoint_loading.register_safe_globals()
    _APPLIED = True


__all__ = ['apply', 'checkpoint_loading', 'gloo_teardown', 'mmcv_ops']
