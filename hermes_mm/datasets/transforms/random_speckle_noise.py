"""Multiplicative speckle noise: an ultrasound-specific strong augmentation.

Ultrasound images are corrupted by speckle, a multiplicative noise from
interfering echoes (Goodman, "Some fundamental properties of speckle",
JOSA 1976). Adding it to the strong view makes the student robust to the
noise the scanner itself produces. Neither MMCV, MMSegmentation nor
MMPretrain has a multiplicative noise transform (MMSeg's
``BioMedicalGaussianNoise`` is additive and for 3-D volumes).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from hermes_mm.registry import TRANSFORMS

#: Noise distributions :class:`RandomSpeckleNoise` can draw from.
SPECKLE_DISTRIBUTIONS = ('gaussian', 'gamma')


@TRANSFORMS.register_module()
class RandomSpeckleNoise(BaseTransform):
    r"""Multiply the image by random speckle, with probability ``prob``.

    .. math::
        I' = \mathrm{clip}(I \cdot (1 + \sigma n)), \quad
        \mathbb{E}[n] = 0,\ \mathrm{Var}[n] = 1

    with :math:`\sigma \sim U(\sigma_{min}, \sigma_{max})` drawn per image.
    ``'gaussian'``: :math:`n \sim N(0, 1)`. ``'gamma'``: the multiplier
    :math:`1 + \sigma n \sim \Gamma(k = 1/\sigma^2, \theta = \sigma^2)`,
    the intensity law of fully developed speckle averaged over :math:`k`
    looks; it has the same mean (1) and standard deviation
    (:math:`\sigma`) as the Gaussian case but is never negative.

    Only ``results['img']`` changes; segmentation maps and labels never do.

    Required Keys:

    - img (np.ndarray): H x W or H x W x C.

    Modified Keys:

    - img (same shape and dtype; integer images are rounded and clipped to
      their dtype's range, e.g. [0, 255] for uint8)

    Args:
        prob (float): Probability of applying the noise. Defaults to 0.5.
        sigma_range (Sequence[float]): ``(min, max)`` of the noise standard
            deviation, relative to the pixel value. Defaults to
            ``(0.05, 0.2)``.
        distribution (str): ``'gaussian'`` or ``'gamma'``. Defaults to
            ``'gaussian'``.
        per_channel (bool): Draw independent noise per channel. False
            (default) shares one noise field across channels, so a grey
            ultrasound image stored as 3 equal channels stays grey.
    """

    def __init__(self,
                 prob: float = 0.5,
                 sigma_range: Sequence[float] = (0.05, 0.2),
                 distribution: str = 'gaussian',
                 per_channel: bool = False) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'`prob` must be in [0, 1], got {prob}.')
        if (len(sigma_range) != 2
                or not 0 <= sigma_range[0] <= sigma_range[1]):
            raise ValueError('`sigma_range` must be (min, max) with '
                             f'0 <= min <= max, got {sigma_range}.')
        if distribution not in SPECKLE_DISTRIBUTIONS:
            raise ValueError(f'`distribution` must be one of '
                             f'{SPECKLE_DISTRIBUTIONS}, got {distribution!r}.')
        self.prob = prob
        self.sigma_range: Tuple[float, float] = (float(sigma_range[0]),
                                                 float(sigma_range[1]))
        self.distribution = distribution
        self.per_channel = per_channel

    @cache_randomness
    def _sample_multiplier(self,
                           shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        """Draw the multiplier ``1 + sigma * n`` (float32), or None to skip.

        Uses ``np.random`` like every MMCV transform, so the data loader's
        per-worker seeding makes it reproducible.
        """
        if np.random.rand() >= self.prob:
            return None
        sigma = np.random.uniform(*self.sigma_range)
        noise_shape = shape
        if not self.per_channel and len(shape) == 3:
            noise_shape = shape[:2] + (1, )
        if sigma == 0:
            return np.ones(noise_shape, dtype=np.float32)
        if self.distribution == 'gaussian':
            multiplier = 1 + sigma * np.random.standard_normal(noise_shape)
        else:
            variance = sigma**2
            multiplier = np.random.gamma(1 / variance, variance, noise_shape)
        return multiplier.astype(np.float32)

    def transform(self, results: dict) -> dict:
        """Multiply ``results['img']`` by speckle noise."""
        img = results['img']
        multiplier = self._sample_multiplier(img.shape)
        if multiplier is None:
            return results
        noisy = img.astype(np.float32) * multiplier
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            noisy = np.clip(np.rint(noisy), info.min, info.max)
        results['img'] = noisy.astype(img.dtype)
        return results

    def __repr__(self) -> str:
        repr_str = self.__class__.__name__
        repr_str += f'(prob={self.prob}, sigma_range={self.sigma_range}, '
        repr_str += f'distribution={self.distribution!r}, '
        repr_str += f'per_channel={self.per_channel})'
        return repr_str
