"""Tests for hermes_mm.models.losses.inter_task_consistency_loss."""
import math

import pytest
import torch

from hermes_mm.models.losses.inter_task_consistency_loss import (
    InterTaskConsistencyLoss, inter_task_consistency_loss)
from hermes_mm.registry import MODELS


def _two_by_two():
    # pixel features a=(1,0) b=(0,1) c=(1,1) d=(0,0), laid out [[a, b], [c, d]]
    feat_map = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]],
                              [[0.0, 1.0], [1.0, 0.0]]]])
    seg_prob = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # f_seg = a
    cls_attn = torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])  # f_cls = (a + b)/2
    return feat_map, seg_prob, cls_attn, torch.tensor([True])


def test_closed_form_one_image_two_by_two():
    feat_map, seg_prob, cls_attn, valid = _two_by_two()
    out = inter_task_consistency_loss(feat_map, seg_prob, cls_attn, valid,
                                      feature_weight=2.0, map_weight=3.0)
    # cos((1,0), (0.5,0.5)) = 1/sqrt(2); map: (0.25 + 0.25 + 0 + 0) / 4
    assert out['loss_feat'].item() == pytest.approx(
        2.0 * (1 - 1 / math.sqrt(2)), abs=1e-6)
    assert out['loss_map'].item() == pytest.approx(3.0 * 0.125, abs=1e-7)


def test_identical_is_exactly_zero():
    torch.manual_seed(0)
    feat_map = torch.randn(3, 5, 4, 4)
    prob = torch.rand(3, 1, 4, 4)  # (B, 1, h, w) is accepted too
    out = inter_task_consistency_loss(feat_map, prob, prob.clone(),
                                      torch.ones(3, dtype=torch.bool))
    assert out['loss_feat'].item() == 0.0
    assert out['loss_map'].item() == 0.0


def test_all_invalid_is_zero_with_graph_and_no_nan():
    feat_map = torch.randn(2, 3, 2, 2, requires_grad=True)
    seg_prob = torch.zeros(2, 2, 2, requires_grad=True)  # empty: mass 0
    cls_attn = torch.rand(2, 2, 2, requires_grad=True)
    out = inter_task_consistency_loss(feat_map, seg_prob, cls_attn,
                                      torch.zeros(2, dtype=torch.bool),
                                      detach='none')
    for value in out.values():
        assert value.item() == 0.0 and value.grad_fn is not None
    sum(out.values()).backward()
    for t in (feat_map, seg_prob, cls_attn):
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_valid_image_with_empty_map_skips_feature_term_only():
    feat_map, seg_prob, cls_attn, _ = _two_by_two()
    feat_map = feat_map.repeat(2, 1, 1, 1)
    seg_prob = torch.cat([seg_prob, torch.zeros(1, 2, 2)]).requires_grad_()
    cls_attn = cls_attn.repeat(2, 1, 1).requires_grad_()
    out = inter_task_consistency_loss(feat_map, seg_prob, cls_attn,
                                      torch.ones(2, dtype=torch.bool),
                                      detach='none')
    assert out['loss_feat'].item() == pytest.approx(1 - 1 / math.sqrt(2),
                                                    abs=1e-6)
    # second image: map term (0.25 * 2) / 4
    assert out['loss_map'].item() == pytest.approx((0.125 + 0.125) / 2)
    sum(out.values()).backward()
    assert torch.isfinite(seg_prob.grad).all()


@pytest.mark.parametrize('detach,seg_grad,cls_grad', [
    ('seg', False, True),
    ('cls', True, False),
    ('none', True, True),
])
def test_gradient_flows_only_to_non_detached_side(detach, seg_grad,
                                                  cls_grad):
    torch.manual_seed(0)
    feat_map = torch.randn(1, 4, 2, 2, requires_grad=True)
    seg_prob = torch.tensor([[[0.9, 0.0], [0.6, 0.3]]], requires_grad=True)
    cls_attn = torch.tensor([[[0.2, 0.7], [0.0, 0.5]]], requires_grad=True)
    out = inter_task_consistency_loss(feat_map, seg_prob, cls_attn,
                                      torch.tensor([True]), detach=detach)
    sum(out.values()).backward()
    assert (seg_prob.grad is not None
            and seg_prob.grad.abs().sum() > 0) == seg_grad
    assert (cls_attn.grad is not None
            and cls_attn.grad.abs().sum() > 0) == cls_grad
    # feature pixel (1, 0) is weighted only by seg_prob, (0, 1) only by
    # cls_attn: each gets gradient iff its side is trained
    assert bool(feat_map.grad[0, :, 1, 0].abs().sum() > 0) == seg_grad
    assert bool(feat_map.grad[0, :, 0, 1].abs().sum() > 0) == cls_grad


def test_module_keys_weights_and_registry():
    loss_mod = MODELS.build(
        dict(type='InterTaskConsistencyLoss', feature_weight=2.0,
             map_weight=3.0, loss_weight=0.5))
    assert isinstance(loss_mod, InterTaskConsistencyLoss)
    # The module returns the weighted (feature, map) terms;
    # InterTaskConsistencyHead names them {loss_name}_feat / _map.
    assert loss_mod.loss_name == 'loss_ict'
    out = loss_mod(*_two_by_two())
    assert isinstance(out, tuple) and len(out) == 2
    feat, map_ = out
    assert torch.is_tensor(feat) and torch.is_tensor(map_)
    assert feat.item() == pytest.approx(
        0.5 * 2.0 * (1 - 1 / math.sqrt(2)), abs=1e-6)
    assert map_.item() == pytest.approx(0.5 * 3.0 * 0.125)


@pytest.mark.parametrize('kwargs,msg', [
    (dict(detach='both'), r"one of \['cls', 'none', 'seg'\], got 'both'"),
    (dict(loss_name='ict'), "start with 'loss_'"),
    (dict(eps=0.0), 'eps must be > 0, got 0.0'),
])
def test_module_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        InterTaskConsistencyLoss(**kwargs)


def test_function_validation():
    feat_map, seg_prob, cls_attn, valid = _two_by_two()
    with pytest.raises(ValueError, match="got 'teacher'"):
        inter_task_consistency_loss(feat_map, seg_prob, cls_attn, valid,
                                    detach='teacher')
    with pytest.raises(ValueError, match=r'seg_prob must have shape'
                       r' \(1, 2, 2\).*got \(1, 4, 4\)'):
        inter_task_consistency_loss(feat_map, torch.rand(1, 4, 4), cls_attn,
                                    valid)
