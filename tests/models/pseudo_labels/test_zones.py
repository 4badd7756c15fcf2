"""Tests for hermes_mm.models.pseudo_labels.zones."""
import pytest
import torch

from hermes_mm.models.pseudo_labels.zones import (Zones,
                                                  dual_threshold_zones)


def _three_class_probs():
    # confidence:          0.90       0.60       0.40       0.75
    return torch.tensor([[0.90, 0.06, 0.04],
                         [0.60, 0.30, 0.10],
                         [0.40, 0.35, 0.25],
                         [0.05, 0.75, 0.20]])


def _assert_partition(z: Zones):
    count = z.reliable.int() + z.ambiguous.int() + z.unreliable.int()
    assert torch.equal(count, torch.ones_like(count))


def test_three_class_scalar_thresholds():
    probs = _three_class_probs()
    z = dual_threshold_zones(probs, tau_low=0.5, tau_high=0.8)
    assert z.pseudo_label.tolist() == [0, 0, 0, 1]
    assert torch.allclose(z.confidence, torch.tensor([0.9, 0.6, 0.4, 0.75]))
    assert z.reliable.tolist() == [True, False, False, False]
    assert z.ambiguous.tolist() == [False, True, False, True]
    assert z.unreliable.tolist() == [False, False, True, False]
    _assert_partition(z)
    # negative_classes: ambiguous & c != y & p_c < 1 - 0.5
    assert z.negative_classes.tolist() == [
        [False, False, False],
        [False, True, True],    # 0.30, 0.10 < 0.5
        [False, False, False],  # unreliable
        [True, False, True],    # 0.05, 0.20 < 0.5; class 1 is predicted
    ]


def test_class_wise_thresholds_indexed_by_predicted_class():
    probs = _three_class_probs()
    # class 0 is easy (high thresholds), class 1 is hard (low thresholds)
    tau_low = torch.tensor([0.65, 0.3, 0.5])
    tau_high = torch.tensor([0.95, 0.7, 0.9])
    z = dual_threshold_zones(probs, tau_low, tau_high)
    # sample 0: 0.9 in [0.65, 0.95) -> ambiguous; 1: 0.6 < 0.65 -> unreliable
    # 2: 0.4 < 0.65 -> unreliable; 3: 0.75 >= 0.7 (class 1) -> reliable
    assert z.reliable.tolist() == [False, False, False, True]
    assert z.ambiguous.tolist() == [True, False, False, False]
    assert z.unreliable.tolist() == [False, True, True, False]
    _assert_partition(z)
    # sample 0: p_c < 1 - 0.65 = 0.35 for c = 1, 2
    assert z.negative_classes.tolist()[0] == [False, True, True]
    assert not z.negative_classes[1:].any()


def test_negative_classes_closed_form_and_predicted_class_excluded():
    torch.manual_seed(0)
    probs = torch.randn(200, 4).softmax(dim=1)
    tau_low, tau_high = 0.3, 0.6  # low tau: predicted class could pass
    z = dual_threshold_zones(probs, tau_low, tau_high)
    _assert_partition(z)
    conf, y = probs.max(1)
    expected = ((conf >= tau_low) & (conf < tau_high))[:, None] & (
        probs < 1 - tau_low)
    expected[torch.arange(200), y] = False
    assert torch.equal(z.negative_classes, expected)
    # the exclusion mattered for at least one sample in this draw
    raw = ((conf >= tau_low) & (conf < tau_high) & (conf < 1 - tau_low))
    assert raw.any()


def test_binary_pixels():
    lesion = torch.tensor([[[0.99, 0.80], [0.55, 0.02]]])  # (1, 2, 2)
    p = lesion.reshape(-1)
    probs = torch.stack([1 - p, p], dim=1)  # background, lesion
    assert probs.shape == (4, 2)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    z = dual_threshold_zones(probs, tau_low=0.7, tau_high=0.95)
    # confidences 0.99, 0.80, 0.55, 0.98
    assert z.pseudo_label.tolist() == [1, 1, 1, 0]
    assert z.reliable.tolist() == [True, False, False, True]
    assert z.ambiguous.tolist() == [False, True, False, False]
    assert z.unreliable.tolist() == [False, False, True, False]
    # ambiguous lesion pixel: p_bg = 0.2 < 1 - 0.7 -> confidently not bg
    assert z.negative_classes.tolist() == [[False, False], [True, False],
                                           [False, False], [False, False]]
    assert z.reliable.view(lesion.shape).shape == lesion.shape
    # binary confidence >= 0.5: tau_low <= 0.5 leaves nothing unreliable
    assert not dual_threshold_zones(probs, 0.5, 0.95).unreliable.any()


def test_equal_thresholds_give_no_ambiguous():
    z = dual_threshold_zones(_three_class_probs(), 0.6, 0.6)
    assert not z.ambiguous.any()
    assert z.reliable.tolist() == [True, True, False, True]
    _assert_partition(z)


@pytest.mark.parametrize('low,high,msg', [
    (0.9, 0.5, r'tau_low=\[0\.9'),
    (-0.1, 0.5, 'tau_low <= tau_high'),
    (0.5, 1.2, 'tau_high=\\[1\\.2'),
    (torch.tensor([0.5, 0.6]), 0.9, r'shape \(3,\).*\(2,\)'),
])
def test_invalid_thresholds(low, high, msg):
    with pytest.raises(ValueError, match=msg):
        dual_threshold_zones(_three_class_probs(), low, high)


def test_invalid_probs_shape():
    with pytest.raises(ValueError, match=r'got shape \(4,\)'):
        dual_threshold_zones(torch.rand(4), 0.5, 0.9)
