"""Dual-threshold selection: split predictions into reliable, ambiguous and
unreliable zones (the pseudo-labelling rule of Hermes, arXiv 2508.02265).

Two thresholds ``tau_low <= tau_high`` on the teacher's confidence give three
zones per sample (an image, or a pixel after flattening):

* *reliable* (``confidence >= tau_high``): the pseudo-label trains the student
  and the sample may be a contrastive anchor / positive;
* *ambiguous* (``tau_low <= confidence < tau_high``): never a pseudo-label,
  only a contrastive **negative** for the classes it is confidently not
  (``negative_classes``), in the spirit of U2PL's use of unreliable pixels
  (Wang et al., CVPR 2022, https://arxiv.org/abs/2203.03884);
* *unreliable* (``confidence < tau_low``): ignored.

Thresholds may be class-wise (one per class, indexed by the *predicted*
class), as in FreeMatch's self-adaptive thresholds (Wang et al., ICLR 2023,
https://arxiv.org/abs/2205.07246). This module only selects; deciding *when*
and *which* thresholds is the threshold policies' job
(:class:`~hermes_mm.models.pseudo_labels.DualThresholdPseudoLabeler` holds
them), and the losses only consume the :class:`Zones`.

Binary (lesion / background) pixels are handled by flattening the
two-class probabilities into ``(N, 2)`` rows ``[1 - p, p]``. For two
classes the confidence ``max(p, 1 - p)`` is
always ``>= 0.5``, so only thresholds in ``[0.5, 1]`` separate anything:
``tau_low <= 0.5`` makes the unreliable zone empty.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

Threshold = Union[float, Tensor]


@dataclass
class Zones:
    """Per-sample dual-threshold zones. The three zone masks partition the
    samples: every sample is in exactly one of them.

    Attributes:
        pseudo_label (LongTensor): (N,) argmax class.
        confidence (Tensor): (N,) max probability.
        reliable (BoolTensor): (N,) ``confidence >= tau_high[pseudo_label]``.
        ambiguous (BoolTensor): (N,)
            ``tau_low[pseudo_label] <= confidence < tau_high[pseudo_label]``.
        unreliable (BoolTensor): (N,) ``confidence < tau_low[pseudo_label]``.
        negative_classes (BoolTensor): (N, K) classes each ambiguous sample
            is confidently *not*: ``probs[:, c] < 1 - tau_low[pseudo_label]``
            and ``c != pseudo_label``; all False for reliable and unreliable
            samples.
    """
    pseudo_label: Tensor
    confidence: Tensor
    reliable: Tensor
    ambiguous: Tensor
    unreliable: Tensor
    negative_classes: Tensor


def _class_thresholds(tau: Threshold, num_classes: int, name: str,
                      ref: Tensor) -> Tensor:
    """Broadcast a scalar or per-class threshold to a (K,) tensor like
    ``ref``, checking its shape."""
    tau = torch.as_tensor(tau, dtype=ref.dtype, device=ref.device)
    if tau.dim() == 0:
        return tau.expand(num_classes)
    if tau.shape != (num_classes, ):
        raise ValueError(f'{name} must be a float or a tensor of shape '
                         f'({num_classes},) (one per class), got shape '
                         f'{tuple(tau.shape)}: {_fmt(tau)}')
    return tau


def _fmt(values: Tensor) -> list:
    """Thresholds as a short list for error messages."""
    return [round(v, 4) for v in values.reshape(-1).tolist()]


def dual_threshold_zones(probs: Tensor, tau_low: Threshold,
                         tau_high: Threshold) -> Zones:
    """Split samples into reliable / ambiguous / unreliable zones.

    With ``y = argmax_c p_c`` and ``q = p_y``:

    .. math::

        reliable   &= q \\ge \\tau_h[y] \\\\
        ambiguous  &= \\tau_l[y] \\le q < \\tau_h[y] \\\\
        unreliable &= q < \\tau_l[y] \\\\
        negative_{c} &= ambiguous \\wedge p_c < 1 - \\tau_l[y]
                        \\wedge c \\ne y

    ``negative_classes[i, c]`` says "the teacher is at least ``tau_low[y]``
    sure that ambiguous sample ``i`` is not class ``c``". The predicted class
    is excluded explicitly: with ``tau_low >= 0.5`` the inequality already
    excludes it, but with a lower ``tau_low`` (many classes) a top class of
    probability 0.4 would otherwise be called "confidently not" itself, and
    the contrastive losses would push the sample away from its most likely
    class.

    Args:
        probs (Tensor): (N, K) class probabilities (rows sum to 1), K >= 2.
            For pixels, flatten first to (B*H*W, K).
        tau_low (float | Tensor): Lower threshold, a float or (K,) per class.
        tau_high (float | Tensor): Upper threshold, a float or (K,) per
            class. Requires ``0 <= tau_low <= tau_high <= 1`` per class;
            ``tau_low == tau_high`` leaves the ambiguous zone empty
            (single-threshold FixMatch-style selection).

    Returns:
        Zones: The zone masks, pseudo-labels and confidences (no gradient).
    """
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError('probs must have shape (N, K) with K >= 2 classes, '
                         f'got shape {tuple(probs.shape)}')
    num_classes = probs.shape[1]
    probs = probs.detach()
    low = _class_thresholds(tau_low, num_classes, 'tau_low', probs)
    high = _class_thresholds(tau_high, num_classes, 'tau_high', probs)
    if not bool(((low >= 0) & (low <= high) & (high <= 1)).all()):
        raise ValueError('thresholds must satisfy 0 <= tau_low <= tau_high '
                         f'<= 1 per class, got tau_low={_fmt(low)}, '
                         f'tau_high={_fmt(high)}')

    confidence, pseudo_label = probs.max(dim=1)
    low_i, high_i = low[pseudo_label], high[pseudo_label]
    reliable = confidence >= high_i
    unreliable = confidence < low_i
    ambiguous = ~(reliable | unreliable)
    not_predicted = torch.ones_like(probs, dtype=torch.bool)
    not_predicted[torch.arange(probs.shape[0], device=probs.device),
                  pseudo_label] = False
    negative_classes = (ambiguous[:, None] & not_predicted
                        & (probs < (1 - low_i)[:, None]))
    return Zones(
        pseudo_label=pseudo_label,
        confidence=confidence,
        reliable=reliable,
        ambiguous=ambiguous,
        unreliable=unreliable,
        negative_classes=negative_classes)


def flatten_pixels(dense: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, C): pixels as rows for
    :func:`dual_threshold_zones`."""
    return dense.permute(0, 2, 3, 1).reshape(-1, dense.shape[1])


def confidence_stats(zones: Zones, num_classes: int,
                     valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Per predicted class: summed confidence and count of ``valid`` samples
    (the input of a threshold policy's ``update``).

    Summed (not averaged) so that ranks can be combined with an all-reduce.
    """
    confidence, labels = zones.confidence, zones.pseudo_label
    if valid is not None:
        confidence, labels = confidence[valid], labels[valid]
    sums = torch.zeros(num_classes, device=confidence.device)
    counts = torch.zeros(num_classes, device=confidence.device)
    sums.index_add_(0, labels, confidence.float())
    counts.index_add_(0, labels,
                      torch.ones_like(confidence, dtype=torch.float))
    return sums, counts


def confidence_histogram(zones: Zones, num_classes: int, bins: int,
                         valid: Optional[Tensor] = None) -> Tensor:
    """Per predicted class, how many ``valid`` samples fall in each of
    ``bins`` equal confidence bins over [0, 1]: a (K, bins) count tensor
    (summed, so ranks combine with an all-reduce). Bin ``i`` holds
    confidences in ``[i / bins, (i + 1) / bins)``, the last one also 1.
    """
    confidence, labels = zones.confidence, zones.pseudo_label
    if valid is not None:
        confidence, labels = confidence[valid], labels[valid]
    index = (confidence.float() * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(num_classes * bins, device=confidence.device)
    hist.index_add_(0, labels * bins + index,
                    torch.ones_like(confidence, dtype=torch.float))
    return hist.view(num_classes, bins)
