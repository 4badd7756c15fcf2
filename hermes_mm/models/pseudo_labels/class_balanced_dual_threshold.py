"""Adaptive dual thresholds that give rare classes their labelled share of
the pseudo-labels (class-balanced self-training)."""
import math
from typing import Optional

import torch
from torch import Tensor

from hermes_mm.registry import MODELS
from ..utils.running_mean import update_running_mean_
from .adaptive_dual_threshold import AdaptiveDualThreshold


@MODELS.register_module()
class ClassBalancedDualThreshold(AdaptiveDualThreshold):
    """:class:`AdaptiveDualThreshold`, then a rare class's upper threshold
    is lowered until the class gets its labelled share of the reliable
    pseudo-labels, but never below ``min_high``.

    Why (issue 20): with the adaptive rule the lesion pixel threshold sits
    at its floor (0.8) while background adapts upwards; on the ``crowded``
    synthetic style the reliable pseudo-labels then hold about a fifth of
    the labelled lesion share (``pl.seg.lesion.recall`` 0.12-0.34), and
    Hermes ends with lower lesion-pixel recall than its exact supervised
    twin at the same precision: the pseudo-label loss teaches a
    background-heavy prior. Class-balanced self-training (CBST, Zou et al.,
    ECCV 2018, https://arxiv.org/abs/1810.07911) and DARS (He et al., ICCV
    2021, https://arxiv.org/abs/2107.11279) choose per-class thresholds so
    that the pseudo-label class distribution follows the labelled one; this
    policy does so from the same histogram, one-sided and bounded:

    * ``s_c``: EMA of class ``c``'s share of the labelled samples (pixels
      of the labelled masks, or labelled images);
    * ``n_c(t)``: EMA count of unlabelled samples predicted ``c`` with
      confidence >= ``t`` (a per-class confidence histogram);
    * ``r``, the class with the largest ``s``, keeps the adaptive
      threshold. For every other class with ``s_c > 0`` the upper threshold
      becomes the largest histogram edge ``t`` <= its adaptive threshold
      with ``n_c(t) >= ratio * n_r(tau_r) * s_c / s_r``, clipped below at
      ``min_high``; ``tau_low_c = max(tau_high_c - margin, low_floor)``.

    A class already holding its share keeps the adaptive thresholds
    (thresholds are only lowered); a teacher that predicts no lesion at all
    cannot be helped here (the threshold then rests at ``min_high``).

    Args:
        num_classes (int): K.
        **adaptive: ``tau_low``, ``tau_high``, ``momentum``, ``margin``,
            ``high_range``, ``low_floor`` of :class:`AdaptiveDualThreshold`.
        min_high (float): Lowest upper threshold a rare class may get.
            Defaults to 0.6.
        ratio (float): Wanted share of the labelled class ratio, in (0, 1].
            Defaults to 1.0.
        histogram_bins (int): Confidence bins over [0, 1] (the resolution
            of the chosen thresholds). Defaults to 50.
    """

    def __init__(self,
                 num_classes: int,
                 min_high: float = 0.6,
                 ratio: float = 1.0,
                 histogram_bins: int = 50,
                 **adaptive) -> None:
        super().__init__(num_classes, **adaptive)
        low_floor = self.low_floor
        if not low_floor <= min_high <= 1:
            raise ValueError(f'min_high must be in [low_floor={low_floor}, '
                             f'1], got {min_high}')
        if not 0 < ratio <= 1:
            raise ValueError(f'ratio must be in (0, 1], got {ratio}')
        if histogram_bins < 2:
            raise ValueError(
                f'histogram_bins must be >= 2, got {histogram_bins}')
        self.min_high = float(min_high)
        self.ratio = float(ratio)
        self.histogram_bins = int(histogram_bins)
        self.register_buffer('histogram',
                             torch.zeros(num_classes, histogram_bins))
        self.register_buffer('labelled_share', torch.zeros(num_classes))
        self.register_buffer('initialised', torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self,
               confidence_sum: Tensor,
               count: Tensor,
               iteration: int,
               histogram: Optional[Tensor] = None,
               labelled_count: Optional[Tensor] = None) -> None:
        """The adaptive update, then the class-balancing step.

        Args:
            confidence_sum, count, iteration: As in
                :meth:`AdaptiveDualThreshold.update`.
            histogram (Tensor): (K, bins) counts of unlabelled samples per
                predicted class and confidence bin
                (``zones.confidence_histogram``), summed across ranks.
            labelled_count (Tensor): (K,) labelled samples per class,
                summed across ranks.
        """
        if histogram is None or labelled_count is None:
            raise ValueError(
                'ClassBalancedDualThreshold.update needs the histogram and '
                'the labelled class counts (DualThresholdPseudoLabeler '
                'passes them when the labelled masks / labels are given)')
        super().update(confidence_sum, count, iteration)
        histogram = histogram.to(self.histogram)
        labelled_count = labelled_count.to(self.labelled_share)
        first = not bool(self.initialised)
        if labelled_count.sum() > 0:
            update_running_mean_(self.labelled_share,
                                 labelled_count / labelled_count.sum(),
                                 self.momentum, first)
        if histogram.sum() > 0:
            update_running_mean_(self.histogram, histogram, self.momentum,
                                 first)
        if labelled_count.sum() > 0 and histogram.sum() > 0:
            self.initialised.fill_(True)
        if not bool(self.initialised):
            return
        self._balance()

    def _edge_index(self, value: float) -> int:
        """Index of the histogram edge at or just below ``value``."""
        return min(math.floor(value * self.histogram_bins + 1e-6),
                   self.histogram_bins - 1)

    def _balance(self) -> None:
        # tails[c, i]: EMA count predicted c with confidence >= i / bins
        tails = self.histogram.flip(1).cumsum(1).flip(1)
        share = self.labelled_share
        ref = int(share.argmax())
        ref_count = tails[ref, self._edge_index(float(self.tau_high[ref]))]
        lowest = self._edge_index(self.min_high)
        for c in range(self.num_classes):
            if c == ref or share[c] <= 0:
                continue
            wanted = self.ratio * ref_count * share[c] / share[ref]
            top = self._edge_index(float(self.tau_high[c]))
            if top <= lowest or tails[c, top] >= wanted:
                continue  # holds its share already, or nowhere to go
            above = [i for i in range(lowest, top) if tails[c, i] >= wanted]
            high = (max(above) if above else lowest) / self.histogram_bins
            self.tau_high[c] = high
            self.tau_low[c] = min(max(high - self.margin, self.low_floor),
                                  high)
