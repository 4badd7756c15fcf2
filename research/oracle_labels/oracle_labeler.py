"""Oracle pseudo-labels: how far could Hermes get if its teacher were right?

Issue 20's bar asks Hermes to recover half of the gap between its
supervised twin and the fully supervised model. At the end of training the
reliable image pseudo-labels are about as accurate as the model that makes
them (``research/pseudo_label_quality.py``), so image self-training has
little to teach. This labeller answers the counterfactual on synthetic data,
whose unlabelled images carry hidden annotations: the teacher's image
and/or pixel probabilities are replaced by one-hot hidden labels *before*
the dual thresholds cut the zones, and everything downstream (losses, CutMix
of the dense targets, contrastive terms, consistency, threshold updates) runs
unchanged. Trained against the twin, it bounds what better pseudo-labels
alone could give at this schedule.

Research only: it needs hidden annotations (a real unlabelled set has none,
and it raises), and it is registered by importing this module
(``custom_imports`` in ``configs/``; run from the repository root with
``PYTHONPATH=.``).
"""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from hermes_mm.models.pseudo_labels import (DualThresholdPseudoLabeler,
                                            PseudoLabels)
from hermes_mm.registry import MODELS


@MODELS.register_module()
class OraclePseudoLabeler(DualThresholdPseudoLabeler):
    """:class:`DualThresholdPseudoLabeler` fed hidden labels instead of the
    teacher's probabilities.

    Args:
        oracle_images (bool): Image probabilities := one-hot hidden labels.
        oracle_pixels (bool): Pixel probabilities := one-hot hidden masks
            where the mask is not ``ignore_index`` (the teacher's
            elsewhere).
        **kwargs: :class:`DualThresholdPseudoLabeler`'s arguments.
    """

    def __init__(self, oracle_images: bool = True,
                 oracle_pixels: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if not (oracle_images or oracle_pixels):
            raise ValueError('OraclePseudoLabeler with oracle_images=False '
                             'and oracle_pixels=False is the plain '
                             'DualThresholdPseudoLabeler; use that')
        self.oracle_images = oracle_images
        self.oracle_pixels = oracle_pixels

    def forward(self, seg_probs: Tensor, cls_probs: Tensor, region: Tensor,
                mixed: Tensor, hidden_masks: Optional[Tensor] = None,
                hidden_labels: Optional[Tensor] = None,
                **kwargs) -> PseudoLabels:
        """:meth:`DualThresholdPseudoLabeler.forward` on the oracle's
        probabilities (same arguments)."""
        if self.oracle_images:
            if hidden_labels is None or bool((hidden_labels < 0).any()):
                got = None if hidden_labels is None else \
                    hidden_labels.tolist()
                raise ValueError(
                    'OraclePseudoLabeler(oracle_images=True) needs the '
                    'hidden label of every unlabelled image (the synthetic '
                    f'data sets have them); got {got}')
            cls_probs = F.one_hot(hidden_labels,
                                  self.cls_num_classes).to(cls_probs.dtype)
        if self.oracle_pixels:
            if hidden_masks is None:
                raise ValueError(
                    'OraclePseudoLabeler(oracle_pixels=True) needs the '
                    'hidden masks of the unlabelled images (the synthetic '
                    'data sets have them)')
            known = hidden_masks != self.ignore_index
            one_hot = F.one_hot(hidden_masks.masked_fill(~known, 0),
                                self.seg_num_classes).permute(0, 3, 1, 2)
            seg_probs = one_hot.to(seg_probs.dtype).where(
                known[:, None], seg_probs)
        return super().forward(seg_probs, cls_probs, region, mixed,
                               hidden_masks=hidden_masks,
                               hidden_labels=hidden_labels, **kwargs)
