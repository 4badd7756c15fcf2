"""Base class of the dual-threshold policies (tau_low < tau_high).

A policy holds class-wise thresholds as buffers, so they are saved in
checkpoints and restored by ``--resume``; :meth:`update` is called once per
training iteration by :meth:`DualThresholdPseudoLabeler.update` (driven by
``TeacherThresholdUpdateHook``) with a summary of the teacher's predictions
on the unlabelled batch. A new policy is one file in this package: subclass
:class:`BaseDualThreshold`, implement :meth:`update`, register it in
``MODELS`` and name it in ``model.pseudo_labeler.seg_threshold`` /
``cls_threshold``.

A policy that needs more than the per-class confidence sums and counts sets
an integer attribute ``histogram_bins``; its ``update`` then also receives
``histogram`` ((K, bins) counts per predicted class and confidence bin) and
``labelled_count`` ((K,) this step's labelled pixels / images per class),
both summed across ranks (``ClassBalancedDualThreshold``).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor


def _as_class_vector(value: Union[float, Tensor], num_classes: int,
                     name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32).flatten()
    if tensor.numel() == 1:
        tensor = tensor.expand(num_classes).clone()
    if tensor.numel() != num_classes:
        raise ValueError(f'{name} must be a float or {num_classes} values, '
                         f'got {tensor.tolist()}')
    return tensor


class BaseDualThreshold(nn.Module):
    """Class-wise dual thresholds ``tau_low <= tau_high`` as buffers.

    Args:
        num_classes (int): K (2 for lesion/background pixels).
        tau_low (float | sequence): Initial lower threshold(s).
        tau_high (float | sequence): Initial upper threshold(s).
    """

    #: Confidence-histogram bins ``update`` wants (with the labelled class
    #: counts); None: only the confidence sums and counts.
    histogram_bins: Optional[int] = None

    def __init__(self, num_classes: int, tau_low, tau_high) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f'num_classes must be >= 2, got {num_classes}')
        self.num_classes = num_classes
        low = _as_class_vector(tau_low, num_classes, 'tau_low')
        high = _as_class_vector(tau_high, num_classes, 'tau_high')
        self.check_thresholds(low, high)
        self.register_buffer('tau_low', low)
        self.register_buffer('tau_high', high)

    @staticmethod
    def check_thresholds(low: Tensor, high: Tensor) -> None:
        """Raise if not ``0 <= low <= high <= 1`` element-wise."""
        if bool((low < 0).any() or (high > 1).any() or (low > high).any()):
            raise ValueError('thresholds must satisfy 0 <= tau_low <= '
                             f'tau_high <= 1, got tau_low={low.tolist()}, '
                             f'tau_high={high.tolist()}')

    def thresholds(self) -> Tuple[Tensor, Tensor]:
        """Current ``(tau_low, tau_high)``, each of shape (K,)."""
        return self.tau_low, self.tau_high

    @torch.no_grad()
    def update(self, confidence_sum: Tensor, count: Tensor,
               iteration: int) -> None:
        """Update after a training iteration.

        Args:
            confidence_sum (Tensor): Per predicted class c, the sum of the
                teacher's confidence (max probability) over the unlabelled
                samples predicted as c (K,), summed across ranks.
            count (Tensor): Number of those samples per class (K,).
            iteration (int): The iteration that just finished (0-based).
        """
        raise NotImplementedError
