"""Tests of :class:`hermes_mm.datasets.transforms.random_speckle_noise.
RandomSpeckleNoise`."""
import numpy as np
import pytest

from hermes_mm.datasets.transforms.random_speckle_noise import \
    RandomSpeckleNoise
from hermes_mm.registry import TRANSFORMS

LEVEL = 100  # grey level of the constant test image
SIGMA = 0.1


def constant_results(size=256, level=LEVEL, dtype=np.uint8):
    seg = np.zeros((size, size), np.uint8)
    seg[: size // 2] = 1
    return dict(
        img=np.full((size, size, 3), level, dtype),
        gt_seg_map=seg,
        hidden_seg_map=seg.copy(),
        seg_fields=['gt_seg_map', 'hidden_seg_map'])


@pytest.mark.parametrize('distribution', ['gaussian', 'gamma'])
def test_noise_is_multiplicative_with_mean_one_and_std_sigma(distribution):
    np.random.seed(0)
    t = RandomSpeckleNoise(prob=1.0, sigma_range=(SIGMA, SIGMA),
                           distribution=distribution)
    img = t(constant_results())['img'][..., 0].astype(np.float64)
    # I' = I (1 + sigma n): mean I, std sigma * I (255 is out of reach).
    assert img.mean() == pytest.approx(LEVEL, abs=0.5)
    assert img.std() == pytest.approx(SIGMA * LEVEL, rel=0.05)
    # Multiplicative: a darker image gets proportionally weaker noise.
    np.random.seed(0)
    dark = t(constant_results(level=LEVEL // 4))['img'].astype(np.float64)
    assert dark.std() == pytest.approx(SIGMA * LEVEL / 4, rel=0.1)


def test_gamma_speckle_is_right_skewed_and_gaussian_is_not():
    skews = {}
    for distribution in ('gaussian', 'gamma'):
        np.random.seed(0)
        t = RandomSpeckleNoise(prob=1.0, sigma_range=(0.3, 0.3),
                               distribution=distribution)
        x = t(constant_results(level=50))['img'][..., 0].astype(np.float64)
        skews[distribution] = ((x - x.mean())**3).mean() / x.std()**3
    # Gamma(k, 1/k) has skewness 2 / sqrt(k) = 2 * sigma = 0.6.
    assert skews['gamma'] == pytest.approx(0.6, abs=0.1)
    assert abs(skews['gaussian']) < 0.1


def test_only_the_image_changes():
    np.random.seed(0)
    results = constant_results(size=32)
    seg = results['gt_seg_map'].copy()
    out = RandomSpeckleNoise(prob=1.0)(results)
    assert not np.all(out['img'] == LEVEL)
    np.testing.assert_array_equal(out['gt_seg_map'], seg)
    np.testing.assert_array_equal(out['hidden_seg_map'], seg)
    assert out['seg_fields'] == ['gt_seg_map', 'hidden_seg_map']


def test_noise_shared_across_channels_unless_per_channel():
    np.random.seed(0)
    shared = RandomSpeckleNoise(prob=1.0)(constant_results(size=16))['img']
    assert np.array_equal(shared[..., 0], shared[..., 1])
    assert np.array_equal(shared[..., 0], shared[..., 2])
    separate = RandomSpeckleNoise(prob=1.0, per_channel=True)(
        constant_results(size=16))['img']
    assert not np.array_equal(separate[..., 0], separate[..., 1])


def test_uint8_is_rounded_and_clipped():
    np.random.seed(0)
    t = RandomSpeckleNoise(prob=1.0, sigma_range=(2.0, 2.0))
    img = t(constant_results(size=64, level=200))['img']
    assert img.dtype == np.uint8
    assert img.max() == 255 and img.min() == 0  # both tails clipped


def test_float_image_keeps_dtype_and_is_not_clipped():
    np.random.seed(0)
    t = RandomSpeckleNoise(prob=1.0, sigma_range=(2.0, 2.0))
    img = t(constant_results(size=64, level=200, dtype=np.float32))['img']
    assert img.dtype == np.float32
    assert img.max() > 255 and img.min() < 0


def test_grey_2d_image():
    np.random.seed(0)
    results = dict(img=np.full((8, 8), LEVEL, np.uint8))
    img = RandomSpeckleNoise(prob=1.0)(results)['img']
    assert img.shape == (8, 8) and not np.all(img == LEVEL)


def test_probability_and_zero_sigma():
    np.random.seed(0)
    t = RandomSpeckleNoise(prob=0.5)
    applied = [
        not np.all(t(constant_results(size=8))['img'] == LEVEL)
        for _ in range(200)
    ]
    assert 0.4 < np.mean(applied) < 0.6
    assert np.all(
        RandomSpeckleNoise(prob=0.0)(constant_results(size=8))['img'] == LEVEL)
    assert np.all(
        RandomSpeckleNoise(prob=1.0, sigma_range=(0, 0))(
            constant_results(size=8))['img'] == LEVEL)


def test_seeded_draws_are_reproducible():
    t = TRANSFORMS.build(dict(type='RandomSpeckleNoise', prob=1.0))
    np.random.seed(3)
    a = t(constant_results(size=16))['img']
    np.random.seed(3)
    b = t(constant_results(size=16))['img']
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('kwargs, match', [
    (dict(prob=1.5), r'`prob` must be in \[0, 1\], got 1.5'),
    (dict(sigma_range=(0.2, 0.1)), r'got \(0.2, 0.1\)'),
    (dict(sigma_range=(-0.1, 0.1)), 'got'),
    (dict(sigma_range=(0.1, )), 'got'),
    (dict(distribution='poisson'), "got 'poisson'"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomSpeckleNoise(**kwargs)
