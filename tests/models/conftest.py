"""Fixtures shared by the model tests."""
import pytest

from hermes_mm.registry import MODELS


@pytest.fixture
def build_labeller():
    """``build_labeller(seg=(low, high), cls=(low, high), **extra)``: a
    ``DualThresholdPseudoLabeler`` for 2 pixel and 3 image classes with
    fixed thresholds, from the registry."""

    def build(seg=(0.5, 0.9), cls=(0.4, 0.6), **extra):
        return MODELS.build(
            dict(
                type='DualThresholdPseudoLabeler',
                seg_num_classes=2,
                cls_num_classes=3,
                seg_threshold=dict(type='FixedDualThreshold',
                                   tau_low=seg[0], tau_high=seg[1]),
                cls_threshold=dict(type='FixedDualThreshold',
                                   tau_low=cls[0], tau_high=cls[1]),
                **extra))

    return build
