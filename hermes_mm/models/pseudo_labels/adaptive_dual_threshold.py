"""Class-wise self-adaptive dual thresholds (FreeMatch / FlexMatch style)."""
from typing import Tuple

import torch
from torch import Tensor

from hermes_mm.registry import MODELS
from .base_dual_threshold import BaseDualThreshold


@MODELS.register_module()
class AdaptiveDualThreshold(BaseDualThreshold):
    """Thresholds that follow the teacher's confidence, per class.

    As in FreeMatch (Wang et al., ICLR 2023, https://arxiv.org/abs/2205.07246)
    a global confidence ``tau_g`` is the EMA of the teacher's mean
    confidence, and class-wise thresholds scale it by a normalised per-class
    learning status. FreeMatch's status is the mean class *probability*,
    which for pixels mostly measures how rare lesions are (and would drive
    the lesion threshold to its floor); like FlexMatch
    (https://arxiv.org/abs/2110.08263) we use the mean confidence of the
    samples *predicted as* the class instead, which is independent of class
    frequency::

        tau_g     <- m tau_g     + (1 - m) mean(max p)
        sigma_c   <- m sigma_c   + (1 - m) mean(max p | predicted c)
        tau_high_c = clip(sigma_c / max(sigma) * tau_g, *high_range)
        tau_low_c  = clip(tau_high_c - margin, min=low_floor)

    A class the teacher predicts with less confidence gets lower thresholds
    (BUSI's malignant class, lesion pixels), so it is not starved of
    pseudo-labels; classes not predicted in an iteration keep their status.

    Args:
        num_classes (int): K.
        tau_low (float | sequence): Initial lower threshold(s).
        tau_high (float | sequence): Initial upper threshold(s); also the
            initial ``sigma`` and (mean) ``tau_g``.
        momentum (float): EMA factor m.
        margin (float): ``tau_high - tau_low``.
        high_range (tuple[float, float]): Bounds of ``tau_high``.
        low_floor (float): Lowest ``tau_low``. For binary pixels the
            confidence is always >= 0.5, so 0.5 is the natural floor.
    """

    def __init__(self,
                 num_classes: int,
                 tau_low=0.7,
                 tau_high=0.95,
                 momentum: float = 0.999,
                 margin: float = 0.2,
                 high_range: Tuple[float, float] = (0.5, 0.99),
                 low_floor: float = 0.5) -> None:
        super().__init__(num_classes, tau_low, tau_high)
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        if margin < 0:
            raise ValueError(f'margin must be >= 0, got {margin}')
        lo, hi = high_range
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f'high_range must satisfy 0 <= low <= high <= 1,'
                             f' got {high_range}')
        self.momentum = momentum
        self.margin = margin
        self.high_range = (float(lo), float(hi))
        self.low_floor = low_floor
        self.register_buffer('global_confidence',
                             self.tau_high.mean().clone())
        self.register_buffer('class_confidence', self.tau_high.clone())

    @torch.no_grad()
    def update(self, confidence_sum: Tensor, count: Tensor,
               iteration: int) -> None:
        """EMA-update the statistics and recompute the thresholds."""
        confidence_sum = confidence_sum.to(self.class_confidence)
        count = count.to(self.class_confidence)
        total = count.sum()
        if total <= 0:
            return
        m = self.momentum
        self.global_confidence.mul_(m).add_(
            (1 - m) * confidence_sum.sum() / total)
        seen = count > 0
        class_mean = confidence_sum / count.clamp(min=1)
        self.class_confidence.copy_(
            torch.where(seen, m * self.class_confidence + (1 - m) * class_mean,
                        self.class_confidence))
        normalised = self.class_confidence / self.class_confidence.max()
        high = (normalised * self.global_confidence).clamp(*self.high_range)
        low = (high - self.margin).clamp(min=self.low_floor)
        self.tau_high.copy_(high)
        self.tau_low.copy_(torch.minimum(low, high))
