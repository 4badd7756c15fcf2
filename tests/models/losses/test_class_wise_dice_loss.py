"""Tests of ClassWiseDiceLoss (per-class batch soft Dice): the closed form,
what "no lesion" costs against MMSeg's channel-flattened Dice, ignored
pixels, normal images' false lesions, weights, bad arguments, and the
decode-head wiring of the class-Dice variant configs."""
import os.path as osp

import pytest
import torch

from hermes_mm.models.losses import ClassWiseDiceLoss, IgnoreIndexDiceLoss
from hermes_mm.registry import MODELS

IGNORE = 255
REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def _pred_target(seed=0, n=3, c=2, h=6, w=7):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    return pred, target


def _square_lesion(n=1, size=16, lo=4, hi=8):
    """(N, size, size) targets with one square lesion (class 1)."""
    target = torch.zeros(n, size, size, dtype=torch.long)
    target[:, lo:hi, lo:hi] = 1
    return target


def _confident(lesion, conf=10.0):
    """Two-class logits that predict ``lesion`` (bool mask) confidently."""
    fg = torch.where(lesion, conf, -conf)
    return torch.stack([-fg, fg], dim=1)


def test_registered_with_the_mmseg_loss_interface():
    loss = MODELS.build(dict(type='ClassWiseDiceLoss', classes=[1]))
    assert isinstance(loss, ClassWiseDiceLoss)
    assert loss.classes == (1, ) and loss.loss_name == 'loss_dice'
    assert MODELS.build(dict(type='ClassWiseDiceLoss',
                             loss_name='loss_cd')).loss_name == 'loss_cd'


@pytest.mark.parametrize('use_sigmoid', [False, True])
@pytest.mark.parametrize('classes', [None, (1, ), (0, 2)])
def test_closed_form_one_dice_per_class_over_the_batch(use_sigmoid, classes):
    pred, target = _pred_target(c=3)
    smooth = 1e-2
    loss = ClassWiseDiceLoss(classes=classes, use_sigmoid=use_sigmoid,
                             smooth=smooth, loss_weight=2.0)
    probs = pred.sigmoid() if use_sigmoid else pred.softmax(dim=1)
    per_class = []
    for c in (range(3) if classes is None else classes):
        p, t = probs[:, c], (target == c).float()
        dice = (2 * (p * t).sum() + smooth) / (
            (p * p).sum() + (t * t).sum() + smooth)
        per_class.append(1 - dice)
    expected = 2.0 * torch.stack(per_class).mean()
    assert torch.allclose(loss(pred, target), expected, atol=1e-6)


def test_no_lesion_costs_a_lesion_dice_not_the_pixel_share():
    """The defect it exists for: MMSeg's Dice (IgnoreIndexDiceLoss keeps its
    maths) charges "no lesion anywhere" only the lesion's pixel share,
    whatever use_sigmoid; the lesion class's Dice charges it 1."""
    target = _square_lesion(n=2, size=32, lo=8, hi=16)  # 64 / 1024 px
    share = (target == 1).float().mean().item()
    none = _confident(torch.zeros_like(target, dtype=torch.bool))
    perfect = _confident(target.bool())
    for use_sigmoid in (True, False):
        flat = IgnoreIndexDiceLoss(use_sigmoid=use_sigmoid)
        assert flat(none, target).item() == pytest.approx(share, abs=1e-3)
    lesion = ClassWiseDiceLoss(classes=(1, ))
    both = ClassWiseDiceLoss()
    assert lesion(none, target).item() == pytest.approx(1.0, abs=1e-3)
    assert lesion(perfect, target).item() == pytest.approx(0.0, abs=1e-3)
    # background Dice ~ 1 - share / (2 - share), lesion Dice 0: the mean
    assert both(none, target).item() == pytest.approx(
        (1 + share / (2 - share)) / 2, abs=1e-3)
    # so at a "no lesion" prediction (lesion probability ~0.02) its
    # gradient on the missed lesion pixels is far stronger (~8.5x)
    grads = []
    for loss in (IgnoreIndexDiceLoss(use_sigmoid=False), both):
        logits = _confident(torch.zeros_like(target, dtype=torch.bool),
                            conf=2.0).requires_grad_(True)
        loss(logits, target).backward()
        grads.append(logits.grad[:, 1][target == 1].mean().item())
    assert grads[1] < 0 and grads[0] < 0  # both push the lesion logit up
    assert grads[1] / grads[0] > 5


def test_ignored_pixels_equal_the_cropped_loss():
    pred, target = _pred_target()
    padded = target.clone()
    padded[:, 4:] = IGNORE
    padded[:, :, 5:] = IGNORE
    loss = ClassWiseDiceLoss()
    got = loss(pred, padded, ignore_index=IGNORE)
    crop = loss(pred[:, :, :4, :5], target[:, :4, :5])
    assert torch.allclose(got, crop, atol=1e-6)
    # what the prediction says on ignored pixels does not matter
    pred2 = pred.clone()
    pred2[:, :, 4:] = 50 * torch.randn_like(pred2[:, :, 4:])
    assert torch.allclose(loss(pred2, padded, ignore_index=IGNORE), got,
                          atol=1e-6)
    # the module's ignore_index is the default
    assert torch.allclose(ClassWiseDiceLoss(ignore_index=IGNORE)(pred,
                                                                 padded), got)


def test_all_ignored_batch_gives_zero_with_a_graph():
    pred, _ = _pred_target()
    pred.requires_grad_(True)
    target = torch.full((3, 6, 7), IGNORE, dtype=torch.long)
    loss = ClassWiseDiceLoss()(pred, target, ignore_index=IGNORE)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(pred.grad) == 0


def test_false_lesions_on_a_normal_image_raise_the_batch_loss():
    """Summed over the batch, a normal image's false lesion pixels enter
    the lesion class's denominator."""
    target = torch.cat([_square_lesion(), torch.zeros(1, 16, 16,
                                                      dtype=torch.long)])
    clean = target.bool()
    false_lesion = clean.clone()
    false_lesion[1, 10:14, 10:14] = True
    loss = ClassWiseDiceLoss(classes=(1, ))
    assert loss(_confident(clean), target).item() < 1e-3
    assert loss(_confident(false_lesion), target).item() > 0.3


def test_image_weights_act_as_a_mask():
    pred, target = _pred_target(n=3)
    loss = ClassWiseDiceLoss()
    zero_last = loss(pred, target, weight=torch.tensor([1., 1., 0.]))
    assert torch.allclose(zero_last, loss(pred[:2], target[:2]), atol=1e-6)
    pixel = torch.ones(3, 6, 7)
    pixel[2] = 0
    assert torch.allclose(loss(pred, target, weight=pixel), zero_last,
                          atol=1e-6)


@pytest.mark.parametrize('kwargs, match', [
    (dict(classes=[]), 'empty'),
    (dict(smooth=-1.0), 'smooth'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassWiseDiceLoss(**kwargs)


def test_bad_inputs_are_named():
    pred, target = _pred_target()
    with pytest.raises(ValueError, match=r'classes \[2\]'):
        ClassWiseDiceLoss(classes=(1, 2))(pred, target)
    with pytest.raises(ValueError, match='class-index targets'):
        ClassWiseDiceLoss()(pred, target[:, None])


@pytest.mark.parametrize('config', [
    'configs/demo/variants/hermes_synthetic_class_dice.py',
    'configs/variants/hermes_busi_class_dice.py',
    'research/dice_loss/configs/twin_class_dice.py',
])
def test_class_dice_configs_put_it_in_the_decode_head(config):
    """Wiring: the variant's decode head computes ``loss_dice`` with
    ClassWiseDiceLoss on the labelled (and pseudo-labelled) masks, next to
    the unchanged cross-entropy."""
    from mmengine.config import Config
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    cfg = Config.fromfile(osp.join(REPO, config))
    head = MODELS.build(cfg.model.segmentor.decode_head)
    kinds = [type(m).__name__ for m in head.loss_decode]
    assert kinds == ['CrossEntropyLoss', 'ClassWiseDiceLoss']
    target = _square_lesion(n=2, size=16)
    logits = _confident(torch.zeros_like(target, dtype=torch.bool))
    samples = []
    for t in target:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=t[None])
        samples.append(s)
    losses = head.loss_by_feat(logits / 4, samples)
    expected = ClassWiseDiceLoss()(logits / 4, target)
    assert torch.allclose(losses['loss_dice'], expected, atol=1e-5)
