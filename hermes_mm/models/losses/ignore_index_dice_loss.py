"""MMSeg's ``DiceLoss`` with pixels labelled ``ignore_index`` left out.

MMSegmentation 1.2.2's ``DiceLoss`` treats its ``ignore_index`` as a *class
channel* to drop, not as a pixel label: pixels labelled 255 (padding, or
pseudo-labels below the confidence threshold) get an all-zero one-hot target
while their predicted probabilities still enter the denominator, so the
loss pushes every class towards 0 there, and an image with every pixel
ignored scores a loss of 1 instead of 0
(https://github.com/open-mmlab/mmsegmentation/pull/2996, see also
https://github.com/open-mmlab/mmsegmentation/issues/1088). Semi-supervised
training ignores most pixels of an unlabelled image, so this matters here.

:class:`IgnoreIndexDiceLoss` is selected by name in the model configs
(``loss_decode``); MMSeg's own ``DiceLoss`` is left as it is. For index
targets, ignored pixels are removed from the numerator and the denominator,
and images with no valid pixel are left out of the mean. Targets without
ignored pixels give exactly the upstream value.
"""
from typing import Optional

import torch
from mmseg.models.losses.dice_loss import (DiceLoss,
                                           _expand_onehot_labels_dice,
                                           dice_loss)

from hermes_mm.registry import MODELS


@MODELS.register_module()
class IgnoreIndexDiceLoss(DiceLoss):
    """``DiceLoss`` whose ``ignore_index`` is a pixel label to leave out.

    Same arguments as :class:`mmseg.models.losses.DiceLoss`
    (``use_sigmoid``, ``activate``, ``reduction``, ``naive_dice``,
    ``loss_weight``, ``ignore_index``, ``eps``, ``loss_name``; the default
    ``loss_name`` is ``'loss_dice'``).
    """

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = 255,
                **kwargs) -> torch.Tensor:
        """Dice loss over the pixels whose label is not ``ignore_index``.

        Args:
            pred (Tensor): (N, C, H, W) logits.
            target (Tensor): (N, H, W) class indices (``ignore_index`` for
                pixels to leave out), or (N, C, H, W) one-hot targets
                (passed to the upstream loss unchanged).
            weight (Tensor, optional): (N,) per-image weights.
            avg_factor (float, optional): Mean denominator; by default the
                number of images with at least one valid pixel.
            reduction_override (str, optional): 'none', 'mean' or 'sum'.
            ignore_index (int, optional): Pixel label to leave out.

        Returns:
            Tensor: The loss (0 with a graph if no pixel is valid).
        """
        upstream = super().forward
        if ignore_index is None or pred.shape == target.shape:
            return upstream(pred, target, weight, avg_factor,
                            reduction_override, ignore_index, **kwargs)
        valid = target != ignore_index
        if bool(valid.all()):
            return upstream(pred, target, weight, avg_factor,
                            reduction_override, ignore_index, **kwargs)
        one_hot = _expand_onehot_labels_dice(
            pred, target.masked_fill(~valid, 0)) * valid[:, None]
        if self.activate:
            if self.use_sigmoid:
                pred = pred.sigmoid()
            elif pred.shape[1] != 1:
                pred = pred.softmax(dim=1)
        pred = pred * valid[:, None]
        reduction = reduction_override or self.reduction
        image_has_valid = valid.flatten(1).any(dim=1).to(pred.dtype)
        if weight is not None:
            image_has_valid = image_has_valid * weight
        if avg_factor is None and reduction == 'mean':
            # Mean over images that have at least one valid pixel; an
            # all-ignored batch gives 0 (with a graph), never NaN.
            avg_factor = image_has_valid.sum().clamp(min=1)
        return self.loss_weight * dice_loss(
            pred,
            one_hot,
            image_has_valid,
            eps=self.eps,
            reduction=reduction,
            naive_dice=self.naive_dice,
            avg_factor=avg_factor,
            ignore_index=self.ignore_index)
