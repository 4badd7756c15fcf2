"""Shared test set-up.

``hermes_mm`` is imported before any test module, so its compat layer (the
mmcv-lite fallback ``mmcv.ops``, weights-only checkpoint allow-list, MMSeg
DiceLoss fix) is in place whatever a test module imports first.
"""
import hermes_mm  # noqa: F401
