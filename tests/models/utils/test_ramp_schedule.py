"""Tests of RampSchedule: closed-form weights of every shape, switch-off,
validation and registry build."""
import math

import pytest
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (registers RampSchedule into TASK_UTILS)
from hermes_mm.models.utils.ramp_schedule import (RAMP_SHAPES,
                                                  SIGMOID_RAMP_SHARPNESS,
                                                  RampSchedule)
from hermes_mm.registry import TASK_UTILS

VALUE, START, LENGTH = 2.0, 10, 20


def test_shapes_are_the_documented_ones():
    assert set(RAMP_SHAPES) == {'linear', 'sigmoid', 'cosine', 'step'}


@pytest.mark.parametrize('shape, expected', [
    # (w(start), w(start + length / 2), w(start + 3 length / 4)) / value
    ('linear', (0.0, 0.5, 0.75)),
    ('sigmoid', (math.exp(-SIGMOID_RAMP_SHARPNESS),
                 math.exp(-SIGMOID_RAMP_SHARPNESS * 0.25),
                 math.exp(-SIGMOID_RAMP_SHARPNESS * 0.0625))),
    ('cosine', (0.0, 0.5, 0.5 * (1 - math.cos(0.75 * math.pi)))),
    ('step', (1.0, 1.0, 1.0)),
])
def test_closed_form_start_middle_end(shape, expected):
    ramp = RampSchedule(value=VALUE, start=START, length=LENGTH, shape=shape)
    # before the start: exactly 0, whatever the shape
    assert ramp(0) == 0.0
    assert ramp(START - 1) == 0.0
    at_start, middle, three_quarters = expected
    assert ramp(START) == pytest.approx(VALUE * at_start, abs=1e-12)
    assert ramp(START + LENGTH // 2) == pytest.approx(VALUE * middle)
    assert ramp(START + 3 * LENGTH // 4) == pytest.approx(
        VALUE * three_quarters)
    # end of the ramp and after: exactly the value
    assert ramp(START + LENGTH) == VALUE
    assert ramp(START + 10 * LENGTH) == VALUE


@pytest.mark.parametrize('shape', sorted(RAMP_SHAPES))
def test_monotone_and_bounded(shape):
    ramp = RampSchedule(value=VALUE, start=START, length=LENGTH, shape=shape)
    weights = [ramp(t) for t in range(START + LENGTH + 5)]
    assert all(0.0 <= w <= VALUE for w in weights)
    assert all(a <= b for a, b in zip(weights, weights[1:]))


@pytest.mark.parametrize('shape', sorted(RAMP_SHAPES))
def test_zero_length_is_a_step_at_start(shape):
    ramp = RampSchedule(value=VALUE, start=START, length=0, shape=shape)
    assert ramp(START - 1) == 0.0
    assert ramp(START) == VALUE
    assert ramp(START + 1) == VALUE


@pytest.mark.parametrize('shape', sorted(RAMP_SHAPES))
def test_value_zero_switches_off(shape):
    ramp = RampSchedule(value=0.0, start=0, length=LENGTH, shape=shape)
    assert all(ramp(t) == 0.0 for t in (0, LENGTH // 2, LENGTH, 10 * LENGTH))


def test_defaults_are_constant_one():
    ramp = RampSchedule()
    assert ramp(0) == 1.0 and ramp(1000) == 1.0


@pytest.mark.parametrize('kwargs, match', [
    (dict(value=-0.1), 'value must be >= 0, got -0.1'),
    (dict(start=-1), 'start=-1'),
    (dict(length=-5), 'length=-5'),
    (dict(shape='exponential'), "'exponential'"),
])
def test_validation_shows_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RampSchedule(**kwargs)


def test_registry_build_and_repr():
    init_default_scope('mmseg')
    ramp = TASK_UTILS.build(
        dict(type='RampSchedule', value=0.5, start=3, length=4,
             shape='linear'))
    assert isinstance(ramp, RampSchedule)
    assert [ramp(t) for t in (2, 3, 5, 7)] == pytest.approx(
        [0.0, 0.0, 0.25, 0.5])
    assert repr(ramp) == ("RampSchedule(value=0.5, start=3, length=4, "
                          "shape='linear')")
