"""Tests of the ITAS neck: shapes on real backbones, closed-form pooling and
gating, saliency loss values, ignore handling and gradients."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
from hermes_mm.models.necks.itas_neck import (ITASNeck, saliency_loss,
                                              saliency_targets)
from hermes_mm.models.necks.task_features import TaskFeatures
from hermes_mm.models.necks.task_split_neck import TaskSplitNeck
from hermes_mm.registry import MODELS

IGNORE = 255

BACKBONES = {
    'resnet18v1c':
    dict(type='ResNetV1c', depth=18),
    'mit_b0_like':
    dict(
        type='MixVisionTransformer',
        in_channels=3,
        embed_dims=32,
        num_stages=4,
        num_layers=[2, 2, 2, 2],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3)),
    'convnext_atto':
    dict(
        type='mmpretrain.ConvNeXt',
        arch='atto',
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False),
}


@pytest.fixture(scope='module')
def backbone_feats():
    """Outputs of three real backbones on one tiny seeded batch."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    img = torch.randn(2, 3, 64, 64)
    feats = {}
    for name, cfg in BACKBONES.items():
        backbone = MODELS.build(cfg)
        backbone.eval()  # MMSeg's ResNet.train() returns None: no chaining
        with torch.no_grad():
            feats[name] = tuple(backbone(img))
    return feats


def _neck(in_channels, **kwargs):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(dict(type='ITASNeck', in_channels=in_channels,
                             **kwargs))


class _ConstLogits(nn.Module):
    """Stands in for ``sal_conv``: returns fixed saliency logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, -1, -1)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_shapes_on_real_backbones(backbone_feats, name):
    feats = backbone_feats[name]
    in_channels = [f.shape[1] for f in feats]
    neck = _neck(in_channels, gate_indices=(1, -1), saliency_channels=8)
    out = neck(feats)
    assert isinstance(out, TaskFeatures)
    assert [f.shape for f in out.seg_feats] == [f.shape for f in feats]
    # ungated levels are passed through as the very same tensors
    assert out.seg_feats[0] is feats[0] and out.seg_feats[2] is feats[2]
    assert not torch.equal(out.seg_feats[1], feats[1])
    assert not torch.equal(out.seg_feats[3], feats[3])
    b, c, h, w = feats[-1].shape
    assert out.cls_map.shape == (b, c, h, w)
    assert out.cls_vec.shape == (b, c)
    assert out.saliency_logits.shape == (b, 1, h, w)
    assert torch.equal(out.cls_attn, out.saliency_logits.sigmoid())
    assert 0 <= out.cls_attn.min() and out.cls_attn.max() <= 1
    mask = torch.zeros(b, 64, 64, dtype=torch.long)
    mask[:, 8:40, 16:48] = 1
    losses = neck.loss(out, mask)
    assert set(losses) == {'loss_sal'}
    assert losses['loss_sal'].dim() == 0
    assert torch.isfinite(losses['loss_sal'])


def test_cls_in_index_selects_level(backbone_feats):
    feats = backbone_feats['resnet18v1c']
    neck = _neck([f.shape[1] for f in feats], cls_in_index=2)
    out = neck(feats)
    assert out.cls_vec.shape == (2, 256)
    assert out.saliency_logits.shape == (2, 1, 4, 4)
    # default gate_indices: every level is gated
    assert all(not torch.equal(s, f) for s, f in zip(out.seg_feats, feats))


@pytest.mark.parametrize('pool_mix,expected', [(0.0, 3.6875), (0.5, 3.640625),
                                               (1.0, 3.59375)])
def test_pooling_closed_form(pool_mix, expected):
    # F = [[1, 2], [3, 4]], A = [[.75, .25], [.5, .5]]
    # F_c = F * (1 + A) = [[1.75, 2.5], [4.5, 6]]
    # weighted = sum(F_c * A) / sum(A) = 7.1875 / 2 = 3.59375
    # global average = 14.75 / 4 = 3.6875
    neck = _neck([1], gate_indices=(), pool_mix=pool_mix)
    logits = torch.tensor([[math.log(3), -math.log(3)], [0.0, 0.0]])
    neck.sal_conv = _ConstLogits(logits[None, None])
    feat = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    out = neck((feat, ))
    torch.testing.assert_close(
        out.cls_attn, torch.tensor([[[[.75, .25], [.5, .5]]]]))
    torch.testing.assert_close(
        out.cls_map, torch.tensor([[[[1.75, 2.5], [4.5, 6.0]]]]))
    torch.testing.assert_close(
        out.cls_vec, torch.tensor([[expected]]), rtol=0, atol=1e-5)


def test_zero_logits_give_uniform_attention():
    # all-zero saliency logits -> A = 0.5 everywhere: F_c = 1.5 F and both
    # poolings equal the mean, so cls_vec = 1.5 mean(F) for any pool_mix
    neck = _neck([4, 6], pool_mix=0.3, saliency_channels=5)
    nn.init.zeros_(neck.sal_conv[-1].weight)
    nn.init.zeros_(neck.sal_conv[-1].bias)
    torch.manual_seed(1)
    feats = (torch.randn(3, 4, 8, 8), torch.randn(3, 6, 4, 4))
    out = neck(feats)
    torch.testing.assert_close(out.cls_attn, torch.full((3, 1, 4, 4), 0.5))
    torch.testing.assert_close(out.cls_map, 1.5 * feats[1])
    torch.testing.assert_close(
        out.cls_vec, 1.5 * feats[1].mean((2, 3)), rtol=0, atol=1e-5)


def test_gate_closed_form_and_residual_range():
    torch.manual_seed(2)
    feats = (torch.rand(2, 4, 8, 8) + 0.1, torch.rand(2, 6, 4, 4) + 0.1,
             torch.rand(2, 8, 2, 2) + 0.1)
    neck = _neck([4, 6, 8], gate_indices=(0, 2), reduction=2)
    # an untrained gate only amplifies: seg / feat in [1, 2] per channel
    out = neck(feats)
    assert out.seg_feats[1] is feats[1]
    for level in (0, 2):
        ratio = out.seg_feats[level] / feats[level]
        assert ratio.min() >= 1 and ratio.max() <= 2
        # one factor per (image, channel), constant over space
        torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))
    # zero last gate layer -> g = sigmoid(0) = 0.5 -> seg = 1.5 feat
    for gate in neck.gates:
        nn.init.zeros_(gate[-1].weight)
        nn.init.zeros_(gate[-1].bias)
    out = neck(feats)
    torch.testing.assert_close(out.seg_feats[0], 1.5 * feats[0])
    torch.testing.assert_close(out.seg_feats[2], 1.5 * feats[2])
    assert out.seg_feats[1] is feats[1]


def test_gate_depends_on_cls_descriptor():
    # the segmentation gate reads the classification descriptor: changing
    # only the classification level changes the gated segmentation level
    neck = _neck([4, 6], gate_indices=(0, ))
    torch.manual_seed(3)
    seg_level = torch.randn(1, 4, 8, 8)
    out_a = neck((seg_level, torch.randn(1, 6, 4, 4)))
    out_b = neck((seg_level, torch.randn(1, 6, 4, 4)))
    assert not torch.allclose(out_a.seg_feats[0], out_b.seg_feats[0])


@pytest.mark.parametrize('kwargs,match', [
    (dict(cls_in_index=3), 'cls_in_index=3'),
    (dict(cls_in_index=-4), 'cls_in_index=-4'),
    (dict(gate_indices=(0, 5)), '=5'),
    (dict(gate_indices=(0, -3)), 'at most once'),
    (dict(pool_mix=1.5), '1.5'),
    (dict(reduction=0), 'reduction must be >= 1, got 0'),
    (dict(saliency_channels=0), 'got 0'),
])
def test_invalid_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ITASNeck(in_channels=[4, 6, 8], **kwargs)


def test_forward_checks_inputs():
    neck = _neck([4, 6])
    with pytest.raises(ValueError, match='expected 2 input levels'):
        neck((torch.zeros(1, 4, 4, 4), ))
    with pytest.raises(ValueError, match=r'\(4, 5\)'):
        neck((torch.zeros(1, 4, 4, 4), torch.zeros(1, 5, 2, 2)))


def test_saliency_loss_closed_form():
    # 4x4 mask -> 2x2 cells with lesion fractions 1, 0.5, 0, 0.25
    mask = torch.tensor([[[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0],
                          [0, 0, 1, 0]]])
    target, valid = saliency_targets(mask, (2, 2), IGNORE)
    expected_target = torch.tensor([[1., .5], [0., .25]])[None, None]
    torch.testing.assert_close(target, expected_target)
    assert valid.all()
    # zero logits: BCE = log 2 whatever the target
    zero = torch.zeros(1, 1, 2, 2)
    torch.testing.assert_close(
        saliency_loss(zero, mask, IGNORE), torch.tensor(math.log(2)))
    # logits x = log 3: BCE = softplus(x) - t x = log 4 - t log 3
    x = torch.full((1, 1, 2, 2), math.log(3))
    expected = math.log(4) - 0.4375 * math.log(3)
    torch.testing.assert_close(
        saliency_loss(x, mask, IGNORE), torch.tensor(expected))
    # (B, 1, H, W) masks are accepted too; the neck applies its weight
    neck = _neck([1], sal_loss_weight=2.0)
    tf = TaskFeatures(
        seg_feats=(), cls_map=x, cls_vec=x[:, :, 0, 0], saliency_logits=x)
    torch.testing.assert_close(
        neck.loss(tf, mask[:, None])['loss_sal'], torch.tensor(2 * expected))


def test_saliency_loss_ignore_index():
    i = IGNORE
    # cell (0,0) all ignored; (0,1) 1 lesion of 2 valid; (1,0) background;
    # (1,1) all lesion
    mask = torch.tensor([[[i, i, 1, i], [i, i, 0, i], [0, 0, 1, 1],
                          [0, 0, 1, 1]]])
    target, valid = saliency_targets(mask, (2, 2), IGNORE)
    assert valid.tolist() == [[[[False, True], [True, True]]]]
    torch.testing.assert_close(target[valid], torch.tensor([.5, 0., 1.]))
    x = torch.full((1, 1, 2, 2), math.log(3))
    expected = math.log(4) - math.log(3) * (0.5 + 0 + 1) / 3
    torch.testing.assert_close(
        saliency_loss(x, mask, IGNORE), torch.tensor(expected))
    # the ignored cell's logit has no influence
    x2 = x.clone()
    x2[0, 0, 0, 0] = 100.0
    torch.testing.assert_close(
        saliency_loss(x2, mask, IGNORE), torch.tensor(expected))


def test_empty_mask_teaches_zero_saliency():
    # BUSI "normal": no lesion -> target 0 everywhere -> loss = softplus(x)
    mask = torch.zeros(2, 8, 8, dtype=torch.long)
    x = torch.full((2, 1, 2, 2), -1.0, requires_grad=True)
    loss = saliency_loss(x, mask, IGNORE)
    torch.testing.assert_close(loss, nn.functional.softplus(torch.tensor(-1.)))
    loss.backward()
    assert (x.grad > 0).all()  # gradient descent lowers the logits


def test_all_ignored_is_zero_and_keeps_graph():
    neck = _neck([3, 5], saliency_channels=4)
    torch.manual_seed(4)
    out = neck((torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)))
    mask = torch.full((2, 16, 16), IGNORE, dtype=torch.long)
    loss = neck.loss(out, mask)['loss_sal']
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    for p in neck.sal_conv.parameters():
        assert p.grad is not None and not p.grad.any()


def test_saliency_gradient_reaches_sal_conv_only():
    neck = _neck([3, 5], saliency_channels=4)
    torch.manual_seed(5)
    out = neck((torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)))
    mask = torch.zeros(2, 16, 16, dtype=torch.long)
    mask[0, 4:12, 4:12] = 1
    neck.loss(out, mask)['loss_sal'].backward()
    assert neck.sal_conv[0].conv.weight.grad.abs().sum() > 0
    assert neck.sal_conv[-1].weight.grad.abs().sum() > 0
    # the saliency loss only looks at the logits: the gates get nothing
    assert all(p.grad is None for p in neck.gates.parameters())


def test_drop_in_for_task_split_neck(backbone_feats):
    """Same return type and shapes as TaskSplitNeck; an MMSeg decode head
    and a linear classifier consume it, and each task's loss reaches the
    other task's ITAS parameters (interaction both ways)."""
    init_default_scope('mmseg')
    feats = backbone_feats['resnet18v1c']
    in_channels = [f.shape[1] for f in feats]
    feats = tuple(f.clone().requires_grad_() for f in feats)
    split = MODELS.build(dict(type='TaskSplitNeck'))
    itas = _neck(in_channels, saliency_channels=8)
    ref, out = split(feats), itas(feats)
    assert isinstance(split, TaskSplitNeck)
    assert type(out) is type(ref)
    assert [f.shape for f in out.seg_feats] == [f.shape
                                                for f in ref.seg_feats]
    assert out.cls_vec.shape == ref.cls_vec.shape
    assert out.cls_map.shape == ref.cls_map.shape
    assert split.loss(ref, None) == {}

    torch.manual_seed(6)
    head = MODELS.build(
        dict(
            type='SegformerHead',
            in_channels=in_channels,
            in_index=[0, 1, 2, 3],
            channels=16,
            num_classes=2,
            norm_cfg=dict(type='BN')))
    classifier = nn.Linear(in_channels[-1], 3)
    seg_logits = head(list(out.seg_feats))
    assert seg_logits.shape == head(list(ref.seg_feats)).shape

    # segmentation loss -> gates and saliency branch (via cls_vec)
    seg_logits.square().mean().backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in itas.gates.parameters())
    assert itas.sal_conv[-1].weight.grad.abs().sum() > 0
    itas.zero_grad()
    # classification loss -> saliency branch (via F_c and the pooling)
    classifier(out.cls_vec).logsumexp(1).mean().backward()
    assert itas.sal_conv[-1].weight.grad.abs().sum() > 0
