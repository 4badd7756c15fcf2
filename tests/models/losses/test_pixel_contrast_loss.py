"""Tests for hermes_mm.models.losses.pixel_contrast_loss."""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from hermes_mm.models.losses.pixel_contrast_loss import (PixelContrastLoss,
                                                         pixel_contrast_loss,
                                                         sample_pixel_contrast)
from hermes_mm.models.pseudo_labels import dual_threshold_zones
from hermes_mm.registry import MODELS

# The package re-exports a function of the same name: import the module.
mod = importlib.import_module('hermes_mm.models.losses.pixel_contrast_loss')

T = 0.5


def module_loss(loss_mod, feats, labels, anchors, neg, generator=None):
    """The module's loss as training computes it: sample, then the loss on
    the sampled rows."""
    sample = loss_mod.sample(labels, anchors, neg, generator)
    return loss_mod(feats[sample.index], sample)


def _toy():
    """Background anchor a0, lesion anchor a1, ambiguous h (not lesion)."""
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([0, 1, 0])
    anchors = torch.tensor([True, True, False])
    neg = torch.tensor([[False, False], [False, False], [False, True]])
    protos = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    return feats, labels, anchors, neg, protos


def test_closed_form_binary_with_prototypes_and_hard_negative():
    feats, labels, anchors, neg, protos = _toy()
    valid = torch.ones(2, dtype=torch.bool)
    e = math.exp
    # background anchor a0: positive p0 (0.8); negatives a1 (0.6), p1 (0)
    l0 = -math.log(e(.8 / T) / (e(.8 / T) + e(.6 / T) + e(0)))
    # lesion anchor a1: positive p1 (0.8); negatives h (-0.28), a0 (0.6),
    # p0 (0.96)
    l1 = -math.log(e(.8 / T) / (e(.8 / T) + e(-.28 / T) + e(.6 / T) +
                                e(.96 / T)))
    assert (l0 + l1) / 2 == pytest.approx(0.8892861, abs=1e-6)
    loss = pixel_contrast_loss(feats, labels, anchors, neg, protos, valid,
                               num_anchors_per_class=8, num_negatives=8,
                               temperature=T)
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)


def test_hard_negatives_first():
    feats, labels, anchors, neg, _ = _toy()
    samples = sample_pixel_contrast(labels, anchors, neg, 8, 1)
    assert [s.cls for s in samples] == [0, 1]
    assert samples[0].negative_idx.tolist() == [1] and samples[0].num_hard == 0
    # budget 1: the ambiguous pixel 2 wins over the lesion-less anchor 0
    assert samples[1].negative_idx.tolist() == [2] and samples[1].num_hard == 1
    samples = sample_pixel_contrast(labels, anchors, neg, 8, 2)
    assert samples[1].negative_idx.tolist() == [2, 0]


def test_binary_not_degenerate_and_gradients_reach_feats():
    torch.manual_seed(0)
    lesion_prob = torch.rand(2, 8, 8)
    p = lesion_prob.reshape(-1)
    zones = dual_threshold_zones(torch.stack([1 - p, p], dim=1), 0.6, 0.85)
    assert zones.ambiguous.any() and zones.reliable.any()
    feats = torch.randn(128, 4, requires_grad=True)
    loss = pixel_contrast_loss(
        F.normalize(feats, dim=1), zones.pseudo_label, zones.reliable,
        zones.negative_classes, torch.zeros(2, 4),
        torch.zeros(2, dtype=torch.bool), 16, 32, 0.1,
        generator=torch.Generator().manual_seed(0))
    assert loss.item() > 0
    loss.backward()
    grad_rows = feats.grad.abs().sum(1) > 0
    assert grad_rows[zones.reliable].any()
    # ambiguous pixels get gradient only as negatives; unreliable ones none
    assert not grad_rows[zones.unreliable].any()
    assert grad_rows[zones.ambiguous & zones.negative_classes.any(1)].any()


def test_ambiguous_pixels_never_positive():
    feats, labels, anchors, neg, protos = _toy()
    invalid = torch.zeros(2, dtype=torch.bool)  # centres = batch means

    def loss_with(h, neg_classes):
        f = feats.clone()
        f[2] = h
        return pixel_contrast_loss(f, labels, anchors, neg_classes, protos,
                                   invalid, 8, 8, T).item()

    near_lesion = torch.tensor([0.6, 0.8])
    far = torch.tensor([-0.6, -0.8])
    no_neg = torch.zeros_like(neg)
    # not a negative of anything: its embedding does not matter (not in the
    # batch-mean centres either, even with pseudo-label 0)
    assert loss_with(near_lesion, no_neg) == pytest.approx(
        loss_with(far, no_neg))
    # a negative of lesion: closer to the lesion anchor -> larger loss
    assert loss_with(near_lesion, neg) > loss_with(far, neg) + 0.1


def test_similarity_tensor_bounded_by_sample_counts(monkeypatch):
    shapes = []
    original = mod.pixel_contrast_logits

    def recording(*args):
        out = original(*args)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(mod, 'pixel_contrast_logits', recording)
    gen = torch.Generator().manual_seed(0)
    for n in (1_000, 100_000):
        labels = torch.randint(0, 2, (n, ), generator=gen)
        anchors = torch.rand(n, generator=gen) < 0.5
        neg = torch.zeros(n, 2, dtype=torch.bool)
        neg[:, 0] = ~anchors & (torch.rand(n, generator=gen) < 0.5)
        feats = F.normalize(torch.randn(n, 8, generator=gen), dim=1)
        pixel_contrast_loss(feats, labels, anchors, neg, torch.zeros(2, 8),
                            torch.zeros(2, dtype=torch.bool), 16, 32, 0.1,
                            generator=gen)
    # per class: (anchors, 1 positive + 32 negatives + 1 other centre),
    # identical for 1e3 and 1e5 pixels
    assert shapes == [(16, 34), (16, 34)] * 2


def test_deterministic_given_generator():
    gen = torch.Generator().manual_seed(1)
    n = 500
    feats = F.normalize(torch.randn(n, 4, generator=gen), dim=1)
    labels = torch.randint(0, 2, (n, ), generator=gen)
    anchors = torch.rand(n, generator=gen) < 0.6
    neg = torch.zeros(n, 2, dtype=torch.bool)
    neg[:, 1] = ~anchors
    args = (feats, labels, anchors, neg, torch.zeros(2, 4),
            torch.zeros(2, dtype=torch.bool), 8, 16, 0.1)

    def run(seed):
        return pixel_contrast_loss(
            *args, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_nothing_to_contrast_returns_zero_with_graph():
    feats = F.normalize(torch.randn(6, 3), dim=1).requires_grad_(True)
    labels = torch.zeros(6, dtype=torch.long)
    none = torch.zeros(6, dtype=torch.bool)
    no_neg = torch.zeros(6, 2, dtype=torch.bool)
    protos, invalid = torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool)
    for anchors in (none, ~none):  # no anchor; one class, no negative
        loss = pixel_contrast_loss(feats, labels, anchors, no_neg, protos,
                                   invalid, 4, 4, T)
        assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))


def test_module_prototypes_ema_state_dict_and_counter(tmp_path):
    loss_mod = MODELS.build(
        dict(type='PixelContrastLoss', feat_dim=2, num_anchors_per_class=8,
             num_negatives=8, temperature=T, prototype_momentum=0.5,
             loss_weight=3.0))
    assert isinstance(loss_mod, PixelContrastLoss)
    assert loss_mod.loss_name == 'loss_con_pix'
    feats, labels, anchors, neg, protos = _toy()
    # one class only and no prototypes: nothing to contrast
    only_bg = torch.tensor([True, False, False])
    loss = module_loss(loss_mod, feats, labels, only_bg,
                       torch.zeros_like(neg))
    assert loss.item() == 0.0 and int(loss_mod.steps_without_pairs) == 1

    # first update: the normalised class means; lesion is never seen
    loss_mod.update_prototypes(
        torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]]),
        torch.tensor([0, 0, 1]), torch.tensor([True, True, False]))
    s = math.sqrt(0.5)
    assert torch.allclose(loss_mod.prototypes, torch.tensor([[s, s],
                                                             [0, 0]]))
    assert loss_mod.proto_valid.tolist() == [True, False]
    # second update: EMA then renormalise
    loss_mod.update_prototypes(torch.tensor([[1.0, 0.0], [0.0, 5.0]]),
                               torch.tensor([0, 1]),
                               torch.ones(2, dtype=torch.bool))
    ema = F.normalize(0.5 * torch.tensor([s, s]) + 0.5 * torch.tensor([1, 0.]),
                      dim=0)
    assert torch.allclose(loss_mod.prototypes[0], ema)
    assert torch.allclose(loss_mod.prototypes[1], torch.tensor([0.0, 1.0]))
    assert loss_mod.proto_valid.tolist() == [True, True]

    # with both prototypes, even the one-class batch has a negative
    loss = module_loss(loss_mod, feats, labels, only_bg,
                       torch.zeros_like(neg))
    assert loss.item() > 0 and int(loss_mod.steps_without_pairs) == 0

    loss_mod.prototypes.copy_(protos)
    expected = pixel_contrast_loss(feats, labels, anchors, neg, protos,
                                   loss_mod.proto_valid, 8, 8, T)
    assert module_loss(loss_mod, feats, labels, anchors,
                       neg).item() == pytest.approx(
        3.0 * expected.item(), abs=1e-6)

    path = tmp_path / 'protos.pth'
    torch.save(loss_mod.state_dict(), path)
    fresh = PixelContrastLoss(feat_dim=2, num_anchors_per_class=8,
                              num_negatives=8, temperature=T,
                              loss_weight=3.0)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    for name, buf in loss_mod.state_dict().items():
        assert torch.equal(buf, fresh.state_dict()[name]), name
    assert torch.equal(module_loss(fresh, feats, labels, anchors, neg),
                       module_loss(loss_mod, feats, labels, anchors, neg))


def test_prototype_ema_weights_the_old_prototype_by_momentum():
    """``proto <- normalize(m * proto + (1 - m) * batch_mean)`` with an
    asymmetric momentum (0.5 could not tell m from 1 - m)."""
    m = 0.75
    loss_mod = PixelContrastLoss(feat_dim=2, prototype_momentum=m)
    loss_mod.update_prototypes(torch.tensor([[1.0, 0.0]]),
                               torch.tensor([0]), torch.tensor([True]))
    loss_mod.update_prototypes(torch.tensor([[0.0, 3.0], [0.0, 1.0]]),
                               torch.tensor([0, 0]),
                               torch.tensor([True, True]))
    want = F.normalize(m * torch.tensor([1.0, 0.0]) +
                       (1 - m) * torch.tensor([0.0, 1.0]), dim=0)
    torch.testing.assert_close(loss_mod.prototypes[0], want)
    assert loss_mod.proto_valid.tolist() == [True, False]


@pytest.mark.parametrize('rows', [0, 3])
def test_update_prototypes_all_reduces_when_nothing_is_sampled(
        monkeypatch, rows):
    """Every rank must join the all-reduces, also a rank whose sample is
    empty (no rows, or no masked row): no collective behind a branch on
    the data. Nothing changes."""
    from mmengine import dist
    calls = []
    monkeypatch.setattr(dist, 'all_reduce',
                        lambda tensor, *a, **k: calls.append(tensor.shape))
    loss_mod = PixelContrastLoss(feat_dim=2)
    loss_mod.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    loss_mod.proto_valid.copy_(torch.tensor([True, False]))
    before = {k: v.clone() for k, v in loss_mod.state_dict().items()}
    loss_mod.update_prototypes(torch.randn(rows, 2),
                               torch.zeros(rows, dtype=torch.long),
                               torch.zeros(rows, dtype=torch.bool))
    assert calls == [torch.Size([2, 2]), torch.Size([2])]
    for key, value in loss_mod.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('kwargs,msg', [
    (dict(temperature=-1.0), 'temperature must be > 0, got -1.0'),
    (dict(prototype_momentum=1.0), r'\[0, 1\), got 1.0'),
    (dict(num_negatives=-2), 'num_negatives=-2'),
    (dict(loss_name='pix'), "start with 'loss_'"),
])
def test_module_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        PixelContrastLoss(feat_dim=2, **kwargs)


def test_sample_first_path_equals_full_path():
    """Sampling from labels/masks, then gathering and projecting only the
    sampled rows (the module, as training runs it), gives the loss of the
    full (N, D) functional path."""
    torch.manual_seed(0)
    n, dim = 400, 8
    feats = torch.randn(n, dim)
    labels = torch.randint(0, 2, (n, ))
    anchors = torch.rand(n) < 0.5
    negatives = torch.zeros(n, 2, dtype=torch.bool)
    negatives[~anchors, 0] = torch.rand(int((~anchors).sum())) < 0.5
    loss_mod = PixelContrastLoss(
        feat_dim=dim, num_anchors_per_class=16, num_negatives=32)
    full = pixel_contrast_loss(feats, labels, anchors, negatives,
                               loss_mod.prototypes, loss_mod.proto_valid,
                               16, 32, loss_mod.temperature,
                               generator=torch.Generator().manual_seed(5))
    sample = loss_mod.sample(labels, anchors, negatives,
                             torch.Generator().manual_seed(5))
    # bounded: at most K * (anchors + negatives) pixels are ever gathered
    assert sample.index.numel() <= 2 * (16 + 32)
    assert torch.equal(sample.labels, labels[sample.index])
    sampled = loss_mod.forward_sampled(feats[sample.index], sample)
    torch.testing.assert_close(full, sampled)
    torch.testing.assert_close(loss_mod(feats[sample.index], sample), full)
    assert full > 0


def test_forward_sampled_empty_sample_is_zero_with_graph():
    loss = PixelContrastLoss(feat_dim=4)
    labels = torch.zeros(10, dtype=torch.long)
    sample = loss.sample(labels, torch.zeros(10, dtype=torch.bool),
                         torch.zeros(10, 2, dtype=torch.bool))
    assert sample.index.numel() == 0
    feats = torch.randn(1, 4, requires_grad=True)
    out = loss.forward_sampled(feats[:0], sample) + feats.sum() * 0
    assert float(out) == 0 and out.requires_grad
    assert int(loss.steps_without_pairs) == 1
    with pytest.raises(ValueError, match='rows'):
        loss.forward_sampled(feats, sample)
