"""Make MMSeg's ``DiceLoss`` ignore pixels labelled ``ignore_index``.

MMSegmentation 1.2.2's ``DiceLoss`` treats its ``ignore_index`` as a *class
channel* to drop, not as a pixel label: pixels labelled 255 (padding, or
pseudo-labels below the confidence threshold) get an all-zero one-hot target
while their predicted probabilities still enter the denominator, so the
loss pushes every class towards 0 there, and an image with every pixel
ignored scores a loss of 1 instead of 0
(https://github.com/open-mmlab/mmsegmentation/pull/2996, see also
https://github.com/open-mmlab/mmsegmentation/issues/1088). Semi-supervised
training ignores most pixels of an unlabelled image, so this matters here.

:func:`install` wraps ``DiceLoss.forward`` so that, for index targets,
ignored pixels are removed from the numerator and the denominator, and
images with no valid pixel are left out of the mean. It is applied only if
a probe shows the installed MMSeg still has the bug; targets without
ignored pixels give exactly the upstream value.
"""
import functools

import torch

_PATCH_FLAG = '_hermes_ignore_fix'


def _probe_is_buggy(dice_cls) -> bool:
    """True if a fully ignored target gives a non-zero loss."""
    loss = dice_cls(use_sigmoid=False)
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.full((1, 2, 2), 255, dtype=torch.long)
    return bool(loss(pred, target, ignore_index=255).abs() > 0)


def masked_dice_forward(original_forward):
    """Wrap ``DiceLoss.forward`` with pixel-level ``ignore_index``."""

    @functools.wraps(original_forward)
    def forward(self,
                pred,
                target,
                weight=None,
                avg_factor=None,
                reduction_override=None,
                ignore_index=255,
                **kwargs):
        from mmseg.models.losses.dice_loss import (_expand_onehot_labels_dice,
                                                   dice_loss)
        if ignore_index is None or pred.shape == target.shape:
            return original_forward(self, pred, target, weight, avg_factor,
                                    reduction_override, ignore_index,
                                    **kwargs)
        valid = target != ignore_index
        if bool(valid.all()):
            return original_forward(self, pred, target, weight, avg_factor,
                                    reduction_override, ignore_index,
                                    **kwargs)
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

    setattr(forward, _PATCH_FLAG, True)
    return forward


def install() -> bool:
    """Patch ``mmseg``'s ``DiceLoss`` if it still has the bug.

    Returns:
        bool: True if the patch is (now) in place.
    """
    from mmseg.models.losses.dice_loss import DiceLoss
    if getattr(DiceLoss.forward, _PATCH_FLAG, False):
        return True
    if not _probe_is_buggy(DiceLoss):
        return False
    DiceLoss.forward = masked_dice_forward(DiceLoss.forward)
    return True
