"""``ClassBalancedDualThreshold`` (issue 20): the adaptive thresholds, then a
rare class's upper threshold lowered, on the histogram's edges, until it gets
its labelled share of the reliable pseudo-labels; and the statistics the
pseudo-labeller feeds it (histogram, labelled class counts)."""
import pytest
import torch

from hermes_mm.models.pseudo_labels import (AdaptiveDualThreshold,
                                            ClassBalancedDualThreshold,
                                            confidence_histogram,
                                            dual_threshold_zones)
from hermes_mm.registry import MODELS

ARGS = dict(num_classes=2, tau_low=0.6, tau_high=0.8, momentum=0.0,
            margin=0.2, high_range=(0.8, 0.99), low_floor=0.5)
BINS = 10
# per predicted class: samples per confidence bin (bin i = [i/10, (i+1)/10))
HIST = torch.zeros(2, BINS)
HIST[0, 9] = 100  # background: 100 pixels at >= 0.9
HIST[1, 9], HIST[1, 8], HIST[1, 7] = 2, 3, 5  # lesion: few sure pixels,
HIST[1, 6], HIST[1, 5] = 20, 10  # many unsure ones
BIN_MID = torch.arange(BINS) / BINS + 0.05


def _stats(hist=HIST, labelled=(80.0, 20.0)):
    return dict(confidence_sum=(hist * BIN_MID).sum(dim=1),
                count=hist.sum(dim=1), histogram=hist.clone(),
                labelled_count=torch.tensor(labelled))


def _pair(**kwargs):
    """The policy and its adaptive twin, both after one update."""
    stats = _stats(**{k: kwargs.pop(k) for k in ('hist', 'labelled')
                      if k in kwargs})
    policy = ClassBalancedDualThreshold(**ARGS, histogram_bins=BINS,
                                        **kwargs)
    policy.update(iteration=0, **stats)
    twin = AdaptiveDualThreshold(**ARGS)
    twin.update(stats['confidence_sum'], stats['count'], iteration=0)
    return policy, twin


def test_rare_class_threshold_lowered_to_its_labelled_share():
    policy, twin = _pair(min_high=0.5)
    low, high = policy.thresholds()
    twin_low, twin_high = twin.thresholds()
    # the adaptive rule leaves the lesion at its 0.8 floor, background above
    assert twin_high[1] == pytest.approx(0.8)
    assert float(twin_high[0]) > 0.8
    # background keeps it; it has 100 samples >= its threshold, so the
    # lesion wants 100 * 0.2 / 0.8 = 25: >= 0.7 holds 10, >= 0.6 holds 30
    assert high[0] == twin_high[0] and low[0] == twin_low[0]
    assert high[1] == pytest.approx(0.6)
    assert low[1] == pytest.approx(0.5)  # max(0.6 - 0.2, low_floor)


@pytest.mark.parametrize('kwargs, expected_high', [
    (dict(min_high=0.7), 0.7),  # not below min_high
    (dict(min_high=0.5, ratio=0.2), 0.8),  # wants 5: >= 0.8 holds 5
    (dict(min_high=0.5, labelled=(100.0, 0.0)), 0.8),  # no labelled lesion
])
def test_bounded_one_sided_and_only_with_a_labelled_share(
        kwargs, expected_high):
    policy, twin = _pair(**kwargs)
    assert policy.thresholds()[1][1] == pytest.approx(expected_high)
    assert policy.thresholds()[1][0] == twin.thresholds()[1][0]


def test_emas_carry_over_and_recompute_from_the_adaptive_value():
    policy = ClassBalancedDualThreshold(**dict(ARGS, momentum=0.5),
                                        histogram_bins=BINS, min_high=0.5)
    policy.update(iteration=0, **_stats())
    first = policy.histogram.clone()
    assert torch.equal(first, HIST)  # the first update takes the values
    assert torch.allclose(policy.labelled_share, torch.tensor([0.8, 0.2]))
    policy.update(iteration=1, **_stats(labelled=(60.0, 40.0)))
    assert torch.allclose(policy.labelled_share, torch.tensor([0.7, 0.3]))
    assert torch.equal(policy.histogram, HIST)  # same batch again
    # wants 100 * 0.3 / 0.7 = 42.9 > every tail (30 at >= 0.6, 40 at
    # >= 0.5): rests at min_high
    assert policy.thresholds()[1][1] == pytest.approx(0.5)


def test_invalid_arguments_and_missing_statistics_are_rejected():
    for bad in (dict(min_high=0.4), dict(ratio=0.0),
                dict(histogram_bins=1)):
        with pytest.raises(ValueError):
            ClassBalancedDualThreshold(**ARGS, **bad)
    policy = ClassBalancedDualThreshold(**ARGS)
    with pytest.raises(ValueError, match='labelled class counts'):
        policy.update(torch.ones(2), torch.ones(2), iteration=0)


def test_confidence_histogram_bins_and_valid_mask():
    probs = torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.0, 1.0],
                          [0.3, 0.7], [0.12, 0.88]])
    zones = dual_threshold_zones(probs, 0.6, 0.8)
    hist = confidence_histogram(zones, 2, BINS)
    assert hist.shape == (2, BINS)
    assert hist[0, 9] == 1  # 0.95
    assert hist[0, 5] == 1  # 0.5 (a tie goes to class 0) in [0.5, 0.6)
    assert hist[1, 9] == 1  # 1.0 is in the last bin
    assert hist[1, 7] == 1 and hist[1, 8] == 1
    assert hist.sum() == 5
    valid = torch.tensor([True, False, True, False, True])
    assert confidence_histogram(zones, 2, BINS, valid).sum() == 3


def _labeller(**seg):
    return MODELS.build(
        dict(type='DualThresholdPseudoLabeler', seg_num_classes=2,
             cls_num_classes=3, ignore_index=255,
             seg_threshold=dict(type='ClassBalancedDualThreshold', **seg),
             cls_threshold=dict(type='FixedDualThreshold', tau_low=0.5,
                                tau_high=0.8)))


def test_labeller_feeds_histogram_and_labelled_pixel_counts(monkeypatch):
    labeller = _labeller(histogram_bins=BINS)
    lesion = torch.zeros(2, 4, 4)
    lesion[:, :2] = 0.95
    seg = torch.stack([1 - lesion, lesion], dim=1)
    region = torch.ones(2, 4, 4, dtype=torch.bool)
    region[1, 3] = False  # padding row of image 1
    inputs = dict(seg_probs=seg, cls_probs=torch.full((2, 3), 1 / 3),
                  region=region, mixed=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match='seg_threshold'):
        labeller(**inputs)
    masks = torch.zeros(3, 4, 4, dtype=torch.long)
    masks[0, 0, :3] = 1
    masks[2, 3] = 255  # ignored pixels are not counted: 44 - 3 = 41
    labeller(labelled_masks=masks, **inputs)
    pending = labeller._pending['seg']
    assert pending['labelled_count'].tolist() == [41.0, 3.0]
    assert pending['histogram'][1, 9] == 16  # 2 images x 8 lesion pixels
    assert pending['histogram'][0, 9] == 8 + 8 - 4  # minus the padding
    assert set(labeller._pending['cls']) == {'confidence_sum', 'count'}
    seen = {}
    policy = labeller.seg_threshold
    original = policy.update

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(policy, 'update', spy)
    labeller.update(iteration=5)
    assert seen['iteration'] == 5
    assert seen['labelled_count'].tolist() == [41.0, 3.0]
    assert torch.equal(seen['histogram'], pending['histogram'])
