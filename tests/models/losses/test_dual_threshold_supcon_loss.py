"""Tests for hermes_mm.models.losses.dual_threshold_supcon_loss."""
import importlib
import math

import pytest
import torch
from mmengine import dist

from hermes_mm.models.losses.dual_threshold_supcon_loss import (
    DualThresholdSupConLoss, dual_threshold_supcon_loss)
from hermes_mm.registry import MODELS

# The package re-exports a function of the same name: import the module.
mod = importlib.import_module(
    'hermes_mm.models.losses.dual_threshold_supcon_loss')

T = 0.5


def _four():
    """Unit vectors with cosines s01=0.6, s02=0, s03=-1, s12=0.8, s13=-0.6,
    s23=0; classes [0, 0, 1, 1]."""
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    return feats, labels


def _empty_queue(dim=2):
    return torch.zeros(0, dim), torch.zeros(0, dtype=torch.long)


def _no_neg(n, k=2):
    return torch.zeros(n, k, dtype=torch.bool)


def test_hand_computed_supcon_four_embeddings():
    feats, labels = _four()
    e = math.exp
    # s / T: s01=1.2, s02=0, s03=-2, s12=1.6, s13=-1.2, s23=0
    l0 = -math.log(e(1.2) / (e(1.2) + e(0) + e(-2)))  # 0.29413
    l1 = -math.log(e(1.2) / (e(1.2) + e(1.6) + e(-1.2)))  # 0.94877
    l2 = -math.log(e(0) / (e(0) + e(1.6) + e(0)))  # 1.93918
    l3 = -math.log(e(0) / (e(-2) + e(-1.2) + e(0)))  # 0.36223
    expected = (l0 + l1 + l2 + l3) / 4
    assert expected == pytest.approx(0.8860778, abs=1e-6)
    loss = dual_threshold_supcon_loss(feats, labels,
                                      torch.ones(4, dtype=torch.bool),
                                      _no_neg(4), *_empty_queue(), T)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ambiguous_is_negative_only_for_its_negative_classes():
    feats, labels = _four()
    anchors = torch.tensor([True, True, True, False])
    e = math.exp
    l0 = -math.log(e(1.2) / (e(1.2) + e(0) + e(-2)))
    l1 = -math.log(e(1.2) / (e(1.2) + e(1.6) + e(-1.2)))
    # sample 3 ambiguous, confidently not class 0: a negative of anchors 0, 1;
    # anchor 2 (class 1) has no positive (3 is not an anchor) -> excluded.
    neg = _no_neg(4)
    neg[3, 0] = True
    loss = dual_threshold_supcon_loss(feats, labels, anchors, neg,
                                      *_empty_queue(), T)
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    # confidently not class 1 only: absent from class-0 denominators
    neg = _no_neg(4)
    neg[3, 1] = True
    l0_wo = -math.log(e(1.2) / (e(1.2) + e(0)))
    l1_wo = -math.log(e(1.2) / (e(1.2) + e(1.6)))
    loss = dual_threshold_supcon_loss(feats, labels, anchors, neg,
                                      *_empty_queue(), T)
    assert loss.item() == pytest.approx((l0_wo + l1_wo) / 2, abs=1e-6)


def test_ambiguous_never_positive_moving_it_closer_raises_loss():
    feats, labels = _four()
    anchors = torch.tensor([True, True, False, False])
    labels = torch.tensor([0, 0, 0, 0])  # the ambiguous 2, 3 "look" class 0
    neg = _no_neg(4)
    neg[2, 0] = True  # 2 is confidently not class 0; 3 has no negatives

    def loss_with(amb2, amb3):
        f = feats.clone()
        f[2], f[3] = amb2, amb3
        return dual_threshold_supcon_loss(f, labels, anchors, neg,
                                          *_empty_queue(), T).item()

    far = torch.tensor([-1.0, 0.0])
    near = torch.tensor([0.8, 0.6])  # close to both anchors
    # 3 is neither positive nor negative: moving it changes nothing
    assert loss_with(far, far) == pytest.approx(loss_with(far, near))
    # 2 is only a negative: closer to the anchors -> larger loss
    assert loss_with(near, far) > loss_with(far, far) + 0.1
    # and it is never a positive: with 2 and 3 both identical to anchor 0,
    # the loss is that of anchors {0, 1} with one extra negative
    e = math.exp
    s = 1.0 / T
    f = feats.clone()
    f[2] = f[3] = feats[0]
    l0 = -math.log(e(0.6 / T) / (e(0.6 / T) + e(s)))
    l1 = -math.log(e(0.6 / T) / (e(0.6 / T) + e(0.6 / T)))
    loss = dual_threshold_supcon_loss(f, labels, anchors, neg,
                                      *_empty_queue(), T)
    assert loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)


def test_queue_supplies_positives_and_negatives():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    anchors = torch.ones(2, dtype=torch.bool)
    # no queue: each class has a single anchor -> no pairs
    none = dual_threshold_supcon_loss(feats, labels, anchors, _no_neg(2),
                                      *_empty_queue(), T)
    assert none.item() == 0.0
    queue = torch.tensor([[0.6, 0.8]])
    q_labels = torch.tensor([0])
    loss = dual_threshold_supcon_loss(feats, labels, anchors, _no_neg(2),
                                      queue, q_labels, T)
    e = math.exp
    # anchor 0: positive queue (s=0.6), negative anchor 1 (s=0)
    expected = -math.log(e(0.6 / T) / (e(0.6 / T) + e(0)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_empty_returns_zero_with_graph_and_gradients_reach_feats():
    feats = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    feats.requires_grad_(True)
    labels = torch.zeros(5, dtype=torch.long)
    loss = dual_threshold_supcon_loss(feats, labels,
                                      torch.zeros(5, dtype=torch.bool),
                                      _no_neg(5), *_empty_queue(3), T)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))

    feats.grad = None
    labels = torch.tensor([0, 0, 1, 1, 0])
    loss = dual_threshold_supcon_loss(feats, labels,
                                      torch.ones(5, dtype=torch.bool),
                                      _no_neg(5), *_empty_queue(3), T)
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    assert (feats.grad.abs().sum(1) > 0).all()


def test_stable_at_tiny_temperature():
    feats, labels = _four()
    feats.requires_grad_(True)
    loss = dual_threshold_supcon_loss(feats, labels,
                                      torch.ones(4, dtype=torch.bool),
                                      _no_neg(4), *_empty_queue(), 1e-3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()


def test_module_queue_fifo_and_state_dict_round_trip(tmp_path):
    loss_mod = MODELS.build(
        dict(type='DualThresholdSupConLoss', num_classes=2, feat_dim=2,
             queue_size_per_class=3, loss_weight=2.0))
    assert isinstance(loss_mod, DualThresholdSupConLoss)
    assert loss_mod.loss_name == 'loss_con_img'
    assert set(loss_mod.state_dict()) == {
        'queue_feats', 'queue_ptr', 'queue_count', 'steps_without_pairs'}
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 0, 1])
    mask = torch.tensor([True, False, True, True])
    loss_mod.enqueue(x, labels, mask)
    assert loss_mod.queue_count.tolist() == [2, 1]
    assert loss_mod.queue_ptr.tolist() == [2, 1]
    # stored L2-normalised
    assert loss_mod.queue_feats[0, :2].tolist() == [[1, 0], [1, 0]]
    assert loss_mod.queue_feats[1, 0].tolist() == [0, -1]
    # two more class-0 items: the ring wraps and overwrites the oldest
    y = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    loss_mod.enqueue(y, torch.tensor([0, 0]), torch.tensor([True, True]))
    assert loss_mod.queue_count.tolist() == [3, 1]
    assert loss_mod.queue_ptr.tolist() == [1, 1]
    assert torch.allclose(loss_mod.queue_feats[0],
                          torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]))
    # more than Q at once: only the newest Q are kept
    z = torch.eye(2).repeat(3, 1)[:5] * torch.arange(1., 6.)[:, None]
    loss_mod.enqueue(z, torch.zeros(5, dtype=torch.long),
                     torch.ones(5, dtype=torch.bool))
    assert loss_mod.queue_count.tolist() == [3, 1]
    assert torch.allclose(
        loss_mod.queue_feats[0],
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]).roll(1, 0))

    qf, ql = loss_mod.queued()
    assert qf.shape == (4, 2) and ql.tolist() == [0, 0, 0, 1]

    path = tmp_path / 'queue.pth'
    torch.save(loss_mod.state_dict(), path)
    fresh = DualThresholdSupConLoss(num_classes=2, feat_dim=2,
                                    queue_size_per_class=3, loss_weight=2.0)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    for name, buf in loss_mod.state_dict().items():
        assert torch.equal(buf, fresh.state_dict()[name]), name
    feats = torch.nn.functional.normalize(torch.randn(4, 2), dim=1)
    args = (feats, torch.tensor([0, 1, 0, 1]),
            torch.ones(4, dtype=torch.bool), _no_neg(4))
    assert torch.equal(loss_mod(*args), fresh(*args))


def test_module_uses_queue_weights_loss_and_counts_empty_steps():
    loss_mod = DualThresholdSupConLoss(num_classes=2, feat_dim=2,
                                       queue_size_per_class=4,
                                       loss_weight=2.0, temperature=T)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    anchors = torch.ones(2, dtype=torch.bool)
    loss = loss_mod(feats, labels, anchors, _no_neg(2))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert int(loss_mod.steps_without_pairs) == 1
    loss_mod(feats, labels, anchors, _no_neg(2))
    assert int(loss_mod.steps_without_pairs) == 2

    loss_mod.enqueue(torch.tensor([[0.6, 0.8]]), torch.tensor([0]),
                     torch.tensor([True]))
    loss = loss_mod(feats, labels, anchors, _no_neg(2))
    e = math.exp
    expected = -math.log(e(0.6 / T) / (e(0.6 / T) + e(0)))
    assert loss.item() == pytest.approx(2.0 * expected, abs=1e-5)
    assert int(loss_mod.steps_without_pairs) == 0
    loss.backward()
    assert feats.grad.abs().sum() > 0
    assert not loss_mod.queue_feats.requires_grad


def test_queue_disabled():
    loss_mod = DualThresholdSupConLoss(num_classes=3, feat_dim=4,
                                       queue_size_per_class=0)
    loss_mod.enqueue(torch.randn(2, 4), torch.tensor([0, 1]),
                     torch.ones(2, dtype=torch.bool))
    assert loss_mod.queued()[0].shape == (0, 4)


def test_enqueue_gathers_unequal_sizes_across_ranks(monkeypatch):
    """Simulate rank 0 of 2, where rank 1 contributes 2 rows (rank 0: 1)."""
    other = {torch.long: torch.tensor([1, 1]),
             torch.float32: torch.tensor([[0.0, 1.0], [0.0, -1.0]])}

    calls = []

    def fake_all_gather(data):
        calls.append(data)
        if len(calls) % 2:  # each gather starts with the size exchange
            return [data, torch.tensor([2])]
        theirs = other[data.dtype]
        padded = data.new_zeros(data.shape)
        padded[:theirs.shape[0]] = theirs
        return [data, padded]

    monkeypatch.setattr(dist, 'get_world_size', lambda: 2)
    monkeypatch.setattr(dist, 'all_gather', fake_all_gather)
    gathered = mod._gather_rows(torch.tensor([[1.0, 0.0], [2.0, 2.0]])[:1])
    assert gathered.tolist() == [[1, 0], [0, 1], [0, -1]]
    loss_mod = DualThresholdSupConLoss(num_classes=2, feat_dim=2,
                                       queue_size_per_class=4)
    loss_mod.enqueue(torch.tensor([[3.0, 0.0]]), torch.tensor([0]),
                     torch.tensor([True]))
    assert loss_mod.queue_count.tolist() == [1, 2]
    assert loss_mod.queue_feats[1, :2].tolist() == [[0, 1], [0, -1]]


@pytest.mark.parametrize('kwargs,msg', [
    (dict(temperature=0.0), 'temperature must be > 0, got 0.0'),
    (dict(queue_size_per_class=-1), 'queue_size_per_class=-1'),
    (dict(loss_name='con'), "start with 'loss_'"),
])
def test_module_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        DualThresholdSupConLoss(num_classes=2, feat_dim=2, **kwargs)


def test_anchor_label_out_of_range():
    feats, labels = _four()
    with pytest.raises(ValueError, match=r'in \[0, 2\), got \[-1'):
        dual_threshold_supcon_loss(feats, torch.tensor([-1, 0, 1, 1]),
                                   torch.ones(4, dtype=torch.bool),
                                   _no_neg(4), *_empty_queue(), T)
