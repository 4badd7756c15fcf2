"""Distribution alignment of the teacher's image probabilities.

Without it nothing balances the image pseudo-labels across classes: a
teacher that leans towards the majority class (BUSI: benign) gives the
minority classes (malignant, normal) few reliable pseudo-labels, and the
student then leans further. ReMixMatch's distribution alignment (Berthelot
et al., ICLR 2020, https://arxiv.org/abs/1911.09785; also in USB's
``DistAlignEMAHook``) rescales each unlabelled image's class probabilities
by ``prior / teacher mean`` and renormalises::

    p~(c) = p(c) * pi_target(c) / pi_model(c) / Z

``pi_model`` is a running mean of the teacher's probabilities on the
unlabelled images, ``pi_target`` a running mean of the labelled images'
one-hot labels (or a fixed prior), both summed across ranks, so that the
aligned pseudo-labels follow the labelled class frequencies on average.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from torch import Tensor

from hermes_mm.registry import MODELS
from ..utils.running_mean import update_running_mean_


@MODELS.register_module()
class DistributionAlignment(nn.Module):
    """Align image probabilities to the labelled class distribution.

    Args:
        num_classes (int): Image classes (filled in by the pseudo-labeller).
        momentum (float): Running-mean momentum of both distributions
            (``pi = momentum * pi + (1 - momentum) * batch mean``); the
            first batch sets them.
        target (sequence[float], optional): A fixed class prior instead of
            the labelled images' running label frequencies.
        eps (float): Floor of the distributions (no division by 0, and a
            class unseen so far keeps a small share).
    """

    def __init__(self,
                 num_classes: int,
                 momentum: float = 0.999,
                 target: Optional[Sequence[float]] = None,
                 eps: float = 1e-6) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        uniform = torch.full((num_classes, ), 1.0 / num_classes)
        if target is not None:
            fixed = torch.as_tensor(target, dtype=torch.float32)
            if fixed.shape != (num_classes, ) or bool((fixed < 0).any()) \
                    or float(fixed.sum()) <= 0:
                raise ValueError(
                    f'target must be {num_classes} non-negative class '
                    f'frequencies, got {list(target)}')
            uniform = fixed / fixed.sum()
        self.num_classes = num_classes
        self.momentum = momentum
        self.fixed_target = target is not None
        self.eps = eps
        self.register_buffer('model_prior', uniform.clone())
        self.register_buffer('target_prior', uniform.clone())
        self.register_buffer('initialised', torch.zeros((),
                                                        dtype=torch.bool))

    @torch.no_grad()
    def update(self, probs: Tensor, labels: Optional[Tensor]) -> None:
        """Update the running distributions with one batch (all ranks)."""
        # Sums and counts in one tensor: one all-reduce for both.
        stats = torch.zeros(2, self.num_classes + 1, device=probs.device)
        stats[0, :-1] = probs.float().sum(dim=0)
        stats[0, -1] = probs.shape[0]
        if labels is not None and not self.fixed_target:
            known = labels[labels >= 0]
            stats[1, :-1] = torch.bincount(
                known, minlength=self.num_classes).to(stats.dtype)
            stats[1, -1] = known.numel()
        all_reduce(stats, op='sum')
        first = not bool(self.initialised)
        for prior, row in ((self.model_prior, stats[0]),
                           (self.target_prior, stats[1])):
            if row[-1] > 0:  # a fixed target has no counts
                update_running_mean_(prior, row[:-1] / row[-1],
                                     self.momentum, first)
        self.initialised.fill_(True)

    @torch.no_grad()
    def forward(self, probs: Tensor,
                labels: Optional[Tensor] = None) -> Tensor:
        """Update the distributions (in training), then align ``probs``.

        Args:
            probs (Tensor): (B, K) teacher probabilities of the unlabelled
                images.
            labels (LongTensor, optional): (L,) labels of this step's
                labelled images (-1 = unknown).

        Returns:
            Tensor: (B, K) aligned probabilities (rows sum to 1).
        """
        if self.training:
            self.update(probs, labels)
        ratio = self.target_prior.clamp(min=self.eps) / \
            self.model_prior.clamp(min=self.eps)
        aligned = probs * ratio.to(probs.dtype)
        return aligned / aligned.sum(dim=1, keepdim=True).clamp(
            min=torch.finfo(probs.dtype).tiny)
