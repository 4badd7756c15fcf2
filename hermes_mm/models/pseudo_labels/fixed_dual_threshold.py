"""Constant dual thresholds."""
from torch import Tensor

from hermes_mm.registry import MODELS
from .base_dual_threshold import BaseDualThreshold


@MODELS.register_module()
class FixedDualThreshold(BaseDualThreshold):
    """Dual thresholds that never change.

    ``tau_low == tau_high`` gives the single-threshold (FixMatch / mean
    teacher) selection used by the ablation and baseline configs.

    Args:
        num_classes (int): K.
        tau_low (float | sequence): Lower threshold(s).
        tau_high (float | sequence): Upper threshold(s).
    """

    def __init__(self,
                 num_classes: int,
                 tau_low=0.7,
                 tau_high=0.95) -> None:
        super().__init__(num_classes, tau_low, tau_high)

    def update(self, confidence_sum: Tensor, count: Tensor,
               iteration: int) -> None:
        """Nothing to update."""
