"""Tests of IgnoreIndexDiceLoss (MMSeg's DiceLoss with pixel ignore_index):
ignored pixels leave the loss as if they were cropped away, an all-ignored
batch gives 0 with a graph, unignored targets keep the upstream value."""
import pytest
import torch
from mmseg.models.losses import DiceLoss

from hermes_mm.models.losses import IgnoreIndexDiceLoss
from hermes_mm.registry import MODELS

IGNORE = 255


def _pred_target(seed=0, n=2, c=2, h=6, w=7):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    return pred, target


def test_registered_and_mmseg_dice_left_alone():
    loss = MODELS.build(dict(type='IgnoreIndexDiceLoss', use_sigmoid=False))
    assert isinstance(loss, IgnoreIndexDiceLoss)
    assert isinstance(loss, DiceLoss) and loss.loss_name == 'loss_dice'
    # MMSeg's own class is not patched
    assert DiceLoss.forward.__module__ == 'mmseg.models.losses.dice_loss'


@pytest.mark.parametrize('naive_dice', [False, True])
@pytest.mark.parametrize('num_classes', [2, 3])
def test_ignored_pixels_equal_the_cropped_loss(naive_dice, num_classes):
    """Padding at the bottom/right (255) == computing on the crop."""
    pred, target = _pred_target(c=num_classes)
    crop_h, crop_w = 4, 5
    padded = target.clone()
    padded[:, crop_h:] = IGNORE
    padded[:, :, crop_w:] = IGNORE
    loss = IgnoreIndexDiceLoss(use_sigmoid=False, naive_dice=naive_dice)
    got = loss(pred, padded, ignore_index=IGNORE)
    crop_pred = pred[:, :, :crop_h, :crop_w].contiguous()
    crop_target = target[:, :crop_h, :crop_w].contiguous()
    expected = loss(crop_pred, crop_target, ignore_index=IGNORE)
    # cropped targets have no 255: the upstream code path computes them
    upstream = DiceLoss.forward(loss, crop_pred, crop_target)
    assert torch.equal(expected, upstream)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and the unpatched loss on the padded target is the biased one
    biased = DiceLoss.forward(loss, pred, padded)
    assert not torch.allclose(biased, expected, rtol=1e-3)


def test_scattered_ignored_pixels_equal_valid_pixels_only():
    """Per image, only its valid pixels enter the numerator and the
    denominator (closed form of the V-Net dice)."""
    pred, target = _pred_target(seed=1)
    g = torch.Generator().manual_seed(2)
    ignore = torch.rand(target.shape, generator=g) < 0.4
    masked = target.masked_fill(ignore, IGNORE)
    loss = IgnoreIndexDiceLoss(use_sigmoid=False, eps=1e-3)
    got = loss(pred, masked, ignore_index=IGNORE)
    probs = pred.softmax(dim=1)
    per_image = []
    for i in range(pred.shape[0]):
        valid = ~ignore[i]
        p = probs[i][:, valid]  # (C, n_valid)
        t = torch.nn.functional.one_hot(target[i][valid], 2).T.float()
        a = (p * t).sum()
        b = (p * p).sum() + 1e-3
        c = (t * t).sum() + 1e-3
        per_image.append(1 - 2 * a / (b + c))
    assert torch.allclose(got, torch.stack(per_image).mean(), atol=1e-6)


def test_all_ignored_batch_gives_zero_with_a_graph():
    pred, _ = _pred_target()
    pred.requires_grad_(True)
    target = torch.full((2, 6, 7), IGNORE, dtype=torch.long)
    loss = IgnoreIndexDiceLoss(use_sigmoid=False)(pred, target,
                                                  ignore_index=IGNORE)
    assert loss.requires_grad
    assert float(loss.detach()) == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) == 0.0
    # upstream MMSeg 1.2.2 scores this batch as 1
    upstream = DiceLoss.forward(
        IgnoreIndexDiceLoss(use_sigmoid=False), pred.detach(), target)
    assert float(upstream) == pytest.approx(1.0, abs=1e-3)


def test_fully_ignored_image_is_left_out_of_the_mean():
    pred, target = _pred_target()
    masked = target.clone()
    masked[1] = IGNORE
    loss = IgnoreIndexDiceLoss(use_sigmoid=False)
    got = loss(pred, masked, ignore_index=IGNORE)
    only_first = loss(pred[:1], target[:1], ignore_index=IGNORE)
    assert torch.allclose(got, only_first, rtol=1e-5)
    per_image = loss(pred, masked, ignore_index=IGNORE,
                     reduction_override='none')
    assert per_image.shape == (2, ) and float(per_image[1]) == 0.0


@pytest.mark.parametrize('kwargs', [
    dict(use_sigmoid=False),
    dict(use_sigmoid=False, naive_dice=True, loss_weight=0.5),
    dict(use_sigmoid=True),
])
def test_no_ignored_pixel_gives_exactly_the_upstream_value(kwargs):
    pred, target = _pred_target(seed=3)
    loss = IgnoreIndexDiceLoss(**kwargs)
    got = loss(pred, target, ignore_index=IGNORE)
    upstream = DiceLoss.forward(loss, pred, target, None, None, None, IGNORE)
    assert torch.equal(got, upstream)


def test_loss_weight_applies_to_the_masked_loss():
    """``loss_weight`` scales the masked loss like the upstream one."""
    pred, target = _pred_target(seed=4)
    padded = target.clone()
    padded[:, 3:] = IGNORE
    loss = IgnoreIndexDiceLoss(use_sigmoid=False, loss_weight=2.0)
    got = loss(pred, padded, weight=None, ignore_index=IGNORE)
    expected = loss(pred[:, :, :3].contiguous(), target[:, :3].contiguous(),
                    ignore_index=IGNORE)
    assert torch.allclose(got, expected, rtol=1e-5)
