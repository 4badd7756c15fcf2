"""A guard against all-background pixel pseudo-labels (issue 20).

Why: a teacher that has not yet found the lesion when the unsupervised ramp
starts labels every unlabelled pixel as reliable background; the student
then learns "no lesion" on every unlabelled image, the teacher follows it,
and the lesion is never found (``research/warmup_collapse/README.md``,
"After the fix": ``crowded`` seed 1, held-out lesion Dice 19.1 against 45.9
for the matched supervised run, with ``pl.seg.lesion.recall`` 0.0 for the
whole run). The labelled images say how much lesion to expect, so the
pixel pseudo-label loss is scaled down while the teacher's reliable lesion
pixels fall short of that:

.. math::
    g = \\mathrm{clip}\\Big(\\frac{\\bar s_u}{\\rho \\, \\bar s_l}, 0, 1\\Big)

with ``s_l`` the lesion share of the labelled images' valid pixels,
``s_u`` the share of reliable lesion pseudo-labels among the unlabelled
images' pixels (inside the images), both exponential moving averages over
steps, and ``rho = min_ratio``. A teacher with no reliable lesion pixel
gives ``g = 0`` (no pixel pseudo-label loss: the student trains on the
labelled images alone), one that finds at least ``rho`` of the expected
lesion share gives ``g = 1`` (Hermes unchanged).
"""
import torch
from torch import Tensor, nn

from hermes_mm.registry import MODELS
from .running_mean import update_running_mean_

__all__ = ['LesionShareGate', 'lesion_share_gate']


def lesion_share_gate(labelled_share: Tensor, pseudo_share: Tensor,
                      min_ratio: float) -> Tensor:
    """``clip(pseudo_share / (min_ratio * labelled_share), 0, 1)``; 1 when
    the labelled images hold no lesion (nothing to compare with).

    Args:
        labelled_share (Tensor): Scalar lesion share of labelled pixels.
        pseudo_share (Tensor): Scalar share of reliable lesion pseudo-labels.
        min_ratio (float): ``rho`` in (0, 1].

    Returns:
        Tensor: Scalar gate in [0, 1].
    """
    expected = min_ratio * labelled_share
    if float(expected) <= 0:
        return torch.ones_like(pseudo_share)
    return (pseudo_share / expected).clamp(0, 1)


@MODELS.register_module()
class LesionShareGate(nn.Module):
    """Running lesion shares and the gate of the pixel pseudo-label loss.

    Args:
        min_ratio (float): Share of the labelled lesion share that the
            teacher's reliable lesion pseudo-labels must reach for the full
            pixel pseudo-label loss, in (0, 1]. Defaults to 0.25.
        momentum (float): EMA momentum of both shares (weight of the old
            value), in [0, 1). The first update takes the values directly.
            Defaults to 0.9.
    """

    def __init__(self, min_ratio: float = 0.25, momentum: float = 0.9):
        super().__init__()
        if not 0 < min_ratio <= 1:
            raise ValueError(f'min_ratio must be in (0, 1], got {min_ratio}')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        self.min_ratio = float(min_ratio)
        self.momentum = float(momentum)
        # checkpointed, so --resume continues with the same gate
        self.register_buffer('labelled_share', torch.zeros(()))
        self.register_buffer('pseudo_share', torch.zeros(()))
        self.register_buffer('initialised', torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def forward(self, gt_masks: Tensor, pseudo_masks: Tensor, region: Tensor,
                lesion_index: int, ignore_index: int) -> Tensor:
        """Update the shares with one batch and return the gate.

        Args:
            gt_masks (Tensor): (B_l, H, W) labelled masks.
            pseudo_masks (Tensor): (B_u, H, W) pixel pseudo-labels,
                ``ignore_index`` where not reliable.
            region (Tensor): (B_u, H, W) bool, True inside the images.
            lesion_index (int): Lesion class.
            ignore_index (int): Label of unsupervised pixels.

        Returns:
            Tensor: Scalar gate in [0, 1].
        """
        valid = gt_masks != ignore_index
        labelled = ((gt_masks == lesion_index) & valid).sum() / \
            valid.sum().clamp(min=1)
        pseudo = ((pseudo_masks == lesion_index) & region).sum() / \
            region.sum().clamp(min=1)
        first = not bool(self.initialised)
        update_running_mean_(self.labelled_share, labelled, self.momentum,
                             first)
        update_running_mean_(self.pseudo_share, pseudo, self.momentum, first)
        self.initialised.fill_(True)
        return lesion_share_gate(self.labelled_share, self.pseudo_share,
                                 self.min_ratio)
