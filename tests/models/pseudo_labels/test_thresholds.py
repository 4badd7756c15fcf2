"""Tests of the dual-threshold policies: Fixed, Ramped and Adaptive.

Closed-form values from the docstrings, validation messages that show the
bad values, and checkpoint (state_dict) round-trips into fresh modules.
"""
import pytest
import torch
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (registers the policies)
from hermes_mm.models.pseudo_labels import (AdaptiveDualThreshold,
                                            BaseDualThreshold,
                                            FixedDualThreshold,
                                            RampedDualThreshold)
from hermes_mm.registry import MODELS


def _close(tensor, values):
    return torch.allclose(tensor, torch.tensor(values, dtype=tensor.dtype),
                          atol=1e-6)


def _stats(sums, counts):
    return torch.tensor(sums), torch.tensor(counts)


# ---------------------------------------------------------------- Fixed
def test_fixed_never_changes_and_broadcasts():
    policy = FixedDualThreshold(num_classes=3, tau_low=0.5,
                                tau_high=[0.75, 0.875, 1.0])
    low, high = policy.thresholds()
    assert _close(low, [0.5, 0.5, 0.5]) and _close(high, [0.75, 0.875, 1.0])
    for it in range(3):
        policy.update(*_stats([5.0, 0.2, 0.0], [6.0, 1.0, 0.0]), it)
    low, high = policy.thresholds()
    assert _close(low, [0.5, 0.5, 0.5]) and _close(high, [0.75, 0.875, 1.0])


def test_fixed_single_threshold_is_allowed():
    policy = FixedDualThreshold(num_classes=2, tau_low=0.75, tau_high=0.75)
    low, high = policy.thresholds()
    assert torch.equal(low, high)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_classes=2, tau_low=0.75, tau_high=0.5),
     r'tau_low=\[0\.75, 0\.75\], tau_high=\[0\.5, 0\.5\]'),
    (dict(num_classes=2, tau_low=-0.25, tau_high=0.5), r'tau_low=\[-0\.25'),
    (dict(num_classes=2, tau_low=0.5, tau_high=1.5), r'tau_high=\[1\.5'),
    (dict(num_classes=3, tau_low=[0.5, 0.75], tau_high=0.9),
     r'tau_low must be a float or 3 values, got \[0\.5, 0\.75\]'),
    (dict(num_classes=1, tau_low=0.5, tau_high=0.75),
     'num_classes must be >= 2, got 1'),
])
def test_fixed_validation_shows_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FixedDualThreshold(**kwargs)


def test_base_update_is_abstract():
    policy = BaseDualThreshold(2, 0.5, 0.75)
    with pytest.raises(NotImplementedError):
        policy.update(*_stats([1.0, 1.0], [1.0, 1.0]), 0)


# --------------------------------------------------------------- Ramped
START_LOW, START_HIGH = [0.875, 0.75], [1.0, 0.875]
FINAL_LOW, FINAL_HIGH = [0.5, 0.625], [0.75, 0.75]


def _ramped(warmup=10, ramp=20):
    return RampedDualThreshold(
        num_classes=2, tau_low=FINAL_LOW, tau_high=FINAL_HIGH,
        start_tau_low=START_LOW, start_tau_high=START_HIGH,
        warmup_iters=warmup, ramp_iters=ramp)


def _ramped_expected(t, warmup=10, ramp=20):
    r = 0.0 if t < warmup else (1.0 if ramp == 0 else
                                min(1.0, (t - warmup) / ramp))
    low = [s + r * (f - s) for s, f in zip(START_LOW, FINAL_LOW)]
    high = [s + r * (f - s) for s, f in zip(START_HIGH, FINAL_HIGH)]
    return low, high


def test_ramped_progress_closed_form():
    policy = _ramped()
    assert [policy.progress(t) for t in (0, 9, 10, 15, 20, 30, 99)] == \
        pytest.approx([0, 0, 0, 0.25, 0.5, 1, 1])


def test_ramped_starts_at_start_values():
    low, high = _ramped().thresholds()
    assert _close(low, START_LOW) and _close(high, START_HIGH)


@pytest.mark.parametrize('finished', [0, 8, 9, 14, 19, 28, 29, 50])
def test_ramped_update_sets_next_iteration_values(finished):
    """``update(t)`` after iteration t leaves the values of t + 1."""
    policy = _ramped()
    policy.update(*_stats([9.0, 9.0], [10.0, 10.0]), finished)
    low, high = policy.thresholds()
    exp_low, exp_high = _ramped_expected(finished + 1)
    assert _close(low, exp_low) and _close(high, exp_high)


def test_ramped_run_follows_the_formula_and_keeps_low_below_high():
    policy = _ramped(warmup=3, ramp=4)
    for t in range(10):
        low, high = policy.thresholds()
        exp_low, exp_high = _ramped_expected(t, warmup=3, ramp=4)
        assert _close(low, exp_low) and _close(high, exp_high), t
        assert bool((low <= high).all())
        policy.update(*_stats([0.0, 0.0], [0.0, 0.0]), t)


def test_ramped_without_warmup_or_ramp_is_final_from_the_start():
    policy = _ramped(warmup=0, ramp=0)
    low, high = policy.thresholds()
    assert _close(low, FINAL_LOW) and _close(high, FINAL_HIGH)


@pytest.mark.parametrize('kwargs, match', [
    (dict(warmup_iters=-1), 'got -1 and 1000'),
    (dict(ramp_iters=-2), 'got 0 and -2'),
    (dict(tau_low=0.875, tau_high=0.75), r'tau_low=\[0\.875'),
    (dict(start_tau_low=0.875, start_tau_high=0.75), r'tau_high=\[0\.75'),
])
def test_ramped_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RampedDualThreshold(num_classes=2, **kwargs)


# ------------------------------------------------------------- Adaptive
def _adaptive_reference(sigma, tau_g, sums, counts, m, margin, high_range,
                        low_floor):
    """The docstring's update, written out per class in plain Python."""
    total = sum(counts)
    tau_g = m * tau_g + (1 - m) * sum(sums) / total
    sigma = [
        m * s + (1 - m) * (c_sum / c) if c > 0 else s
        for s, c_sum, c in zip(sigma, sums, counts)
    ]
    high = [
        min(max(s / max(sigma) * tau_g, high_range[0]), high_range[1])
        for s in sigma
    ]
    low = [min(max(h - margin, low_floor), h) for h in high]
    return sigma, tau_g, low, high


ADAPTIVE = dict(num_classes=3, tau_low=0.7, tau_high=0.9, momentum=0.5,
                margin=0.2, high_range=(0.5, 0.99), low_floor=0.5)


def test_adaptive_initial_state():
    policy = AdaptiveDualThreshold(**ADAPTIVE)
    low, high = policy.thresholds()
    assert _close(low, [0.7] * 3) and _close(high, [0.9] * 3)
    assert _close(policy.class_confidence, [0.9] * 3)
    assert float(policy.global_confidence) == pytest.approx(0.9)


def test_adaptive_closed_form_after_one_and_two_updates():
    policy = AdaptiveDualThreshold(**ADAPTIVE)
    cfg = dict(m=0.5, margin=0.2, high_range=(0.5, 0.99), low_floor=0.5)
    # class 2 is never predicted in the first step: it keeps its status
    step1 = ([1.6, 0.6, 0.0], [2.0, 1.0, 0.0])
    sigma, tau_g, low, high = _adaptive_reference([0.9] * 3, 0.9, *step1,
                                                  **cfg)
    # by hand: tau_g = 0.45 + 0.5 * 2.2 / 3, sigma = [0.85, 0.75, 0.9]
    assert tau_g == pytest.approx(0.45 + 1.1 / 3)
    assert sigma == pytest.approx([0.85, 0.75, 0.9])
    policy.update(*_stats(*step1), iteration=0)
    assert _close(policy.class_confidence, sigma)
    assert float(policy.global_confidence) == pytest.approx(tau_g)
    p_low, p_high = policy.thresholds()
    assert _close(p_high, high) and _close(p_low, low)
    # class 1 (least confident) gets the lowest thresholds, and its low
    # threshold hits the floor (0.75 / 0.9 * 0.8167 - 0.2 < 0.5)
    assert int(p_high.argmin()) == 1 and float(p_low[1]) == pytest.approx(0.5)

    step2 = ([0.0, 1.5, 2.7], [0.0, 2.0, 3.0])  # now class 0 is unseen
    sigma, tau_g, low, high = _adaptive_reference(sigma, tau_g, *step2,
                                                  **cfg)
    policy.update(*_stats(*step2), iteration=1)
    assert float(policy.class_confidence[0]) == pytest.approx(0.85)
    assert _close(policy.class_confidence, sigma)
    assert float(policy.global_confidence) == pytest.approx(tau_g)
    p_low, p_high = policy.thresholds()
    assert _close(p_high, high) and _close(p_low, low)


def test_adaptive_empty_batch_changes_nothing():
    policy = AdaptiveDualThreshold(**ADAPTIVE)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    policy.update(*_stats([0.0] * 3, [0.0] * 3), iteration=0)
    for key, value in policy.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_adaptive_bounds_and_low_never_above_high():
    # a floor above the upper clip: low must be capped at high
    policy = AdaptiveDualThreshold(
        num_classes=3, tau_low=0.7, tau_high=0.9, momentum=0.0, margin=0.05,
        high_range=(0.8, 0.85), low_floor=0.9)
    policy.update(*_stats([0.99, 0.4, 1.2], [1.0, 1.0, 2.0]), iteration=0)
    low, high = policy.thresholds()
    # momentum 0: sigma = [0.99, 0.4, 0.6], tau_g = 2.59 / 4
    tau_g = 2.59 / 4
    raw = [0.99 / 0.99 * tau_g, 0.4 / 0.99 * tau_g, 0.6 / 0.99 * tau_g]
    assert all(r < 0.8 for r in raw)  # every class is clipped up
    assert _close(high, [0.8, 0.8, 0.8])
    assert torch.equal(low, high)
    # clipped from above
    policy = AdaptiveDualThreshold(
        num_classes=2, tau_low=0.5, tau_high=0.9, momentum=0.0, margin=0.1,
        high_range=(0.5, 0.6), low_floor=0.0)
    policy.update(*_stats([0.99, 0.98], [1.0, 1.0]), iteration=0)
    low, high = policy.thresholds()
    assert _close(high, [0.6, 0.6]) and _close(low, [0.5, 0.5])


@pytest.mark.parametrize('kwargs, match', [
    (dict(momentum=1.0), r'momentum must be in \[0, 1\), got 1\.0'),
    (dict(margin=-0.1), 'margin must be >= 0, got -0.1'),
    (dict(high_range=(0.9, 0.8)), r'got \(0\.9, 0\.8\)'),
    (dict(tau_low=0.95, tau_high=0.9), r'tau_low=\[0\.949'),
])
def test_adaptive_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveDualThreshold(num_classes=2, **kwargs)


# --------------------------------------------------------- checkpoints
def _trained(policy, steps=2):
    for it in range(steps):
        policy.update(*_stats([0.9 + it * 0.3, 0.7, 0.0][:policy.num_classes],
                              [1.0, 1.0, 0.0][:policy.num_classes]), it)
    return policy


@pytest.mark.parametrize('cfg', [
    dict(type='FixedDualThreshold', tau_low=[0.5, 0.625], tau_high=0.875),
    dict(type='RampedDualThreshold', warmup_iters=0, ramp_iters=4),
    dict(type='AdaptiveDualThreshold', momentum=0.5),
])
def test_state_dict_round_trip_into_fresh_module(cfg):
    init_default_scope('mmseg')
    original = _trained(MODELS.build(dict(cfg, num_classes=2)))
    fresh_cfg = {k: v for k, v in cfg.items()
                 if k in ('type', 'warmup_iters', 'ramp_iters', 'momentum')}
    fresh = MODELS.build(dict(fresh_cfg, num_classes=2))
    fresh.load_state_dict(original.state_dict())
    for a, b in zip(original.thresholds(), fresh.thresholds()):
        assert torch.equal(a, b)
    for key, value in original.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # and they keep evolving identically
    stats = _stats([1.7, 0.6], [2.0, 1.0])
    original.update(*stats, 5)
    fresh.update(*stats, 5)
    for a, b in zip(original.thresholds(), fresh.thresholds()):
        assert torch.equal(a, b)


@pytest.mark.parametrize('cls, extra', [
    (FixedDualThreshold, []),
    (RampedDualThreshold, ['start_low', 'start_high', 'final_low',
                           'final_high']),
    (AdaptiveDualThreshold, ['global_confidence', 'class_confidence']),
])
def test_state_is_in_buffers(cls, extra):
    keys = set(cls(num_classes=2).state_dict())
    assert keys == {'tau_low', 'tau_high', *extra}
