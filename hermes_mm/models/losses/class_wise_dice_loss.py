"""Soft Dice per class over the whole batch, averaged over the classes.

MMSegmentation 1.2.2's ``dice_loss`` flattens every class channel of an
image into one vector (``pred.flatten(1)``) and computes a single Dice over
it, so on a two-class lesion task the background channel dominates: a
prediction of "no lesion anywhere" costs exactly the image's lesion share
(0.0625 for a 6.25% lesion, whatever ``use_sigmoid``), while a lesion Dice
would cost 1. :class:`IgnoreIndexDiceLoss` keeps that upstream maths (it
only leaves ignored pixels out). nnU-Net, SSL4MIS and MONAI compute Dice
per class instead.

:class:`ClassWiseDiceLoss` computes, for each class in ``classes``, one
V-Net soft Dice over every valid pixel of the batch (the "batch Dice" of
SSL4MIS's ``DiceLoss`` and nnU-Net), and returns the mean of ``1 - Dice``
over those classes. Pixels labelled ``ignore_index`` (padding, unreliable
pseudo-labels) are left out of the numerator and the denominator. Summing
over the batch keeps normal images (no lesion) in the loss: their false
lesion pixels enter the lesion class's denominator. Under distributed
training the batch is each process's own (the sums are not all-reduced),
as in SSL4MIS and nnU-Net's default.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from hermes_mm.registry import MODELS


@MODELS.register_module()
class ClassWiseDiceLoss(nn.Module):
    """Batch soft Dice per class, mean over ``classes``.

    Args:
        classes (Sequence[int], optional): Class channels whose Dice enters
            the mean; default every channel of the prediction.
        use_sigmoid (bool): Class probabilities from a sigmoid per channel
            instead of a softmax over the channels. Defaults to False.
        smooth (float): Added to the numerator and the denominator, so a
            class absent from both target and prediction scores Dice 1.
            Defaults to 1e-5 (SSL4MIS).
        loss_weight (float): Multiplies the loss. Defaults to 1.0.
        ignore_index (int): Pixel label left out when the caller passes
            none. Defaults to 255.
        loss_name (str): Name of the loss item (``loss_`` prefix: it is
            back-propagated). Defaults to ``'loss_dice'``.
    """

    def __init__(self,
                 classes: Optional[Sequence[int]] = None,
                 use_sigmoid: bool = False,
                 smooth: float = 1e-5,
                 loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 loss_name: str = 'loss_dice'):
        super().__init__()
        if classes is not None and len(classes) == 0:
            raise ValueError('ClassWiseDiceLoss: `classes` is empty; give '
                             'at least one class channel, or None for all')
        if smooth < 0:
            raise ValueError(
                f'ClassWiseDiceLoss: `smooth` must be >= 0, got {smooth}')
        self.classes = None if classes is None else tuple(classes)
        self.use_sigmoid = use_sigmoid
        self.smooth = smooth
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> torch.Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) class indices.

        Args:
            pred (Tensor): (N, C, H, W) logits.
            target (Tensor): (N, H, W) class indices; ``ignore_index`` for
                pixels to leave out.
            weight (Tensor, optional): (N,) per-image or (N, H, W) per-pixel
                weights, applied as a soft mask to both Dice sums.
            ignore_index (int, optional): Pixel label to leave out; default
                ``self.ignore_index``.

        Returns:
            Tensor: The loss; 0 with a graph if no pixel is valid.
        """
        num_classes = pred.shape[1]
        if target.shape != pred.shape[:1] + pred.shape[2:]:
            raise ValueError(
                'ClassWiseDiceLoss expects (N, H, W) class-index targets '
                f'for (N, C, H, W) logits; got target {tuple(target.shape)} '
                f'for logits {tuple(pred.shape)}')
        classes = (range(num_classes) if self.classes is None else
                   self.classes)
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f'ClassWiseDiceLoss: classes {bad} are not '
                             f'channels of a {num_classes}-class prediction')
        ignore_index = (self.ignore_index
                        if ignore_index is None else ignore_index)
        valid = target != ignore_index
        if not bool(valid.any()):
            return pred.sum() * 0
        mask = valid.to(pred.dtype)
        if weight is not None:
            mask = mask * (weight.view(-1, 1, 1)
                           if weight.dim() == 1 else weight)
        probs = pred.sigmoid() if self.use_sigmoid else pred.softmax(dim=1)
        one_hot = F.one_hot(target.masked_fill(~valid, 0), num_classes)
        index = torch.as_tensor(list(classes), device=pred.device)
        p = probs.index_select(1, index)
        t = one_hot.permute(0, 3, 1, 2).index_select(1, index).to(pred.dtype)
        m = mask.unsqueeze(1)
        dims = (0, 2, 3)
        inter = (m * p * t).sum(dims)
        denom = (m * (p * p + t * t)).sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return self.loss_weight * (1 - dice).mean()

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the losses dict."""
        return self._loss_name
