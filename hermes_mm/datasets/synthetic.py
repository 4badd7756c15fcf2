"""Synthetic breast-ultrasound images in the raw BUSI layout.

For demos, tests and CPU smoke runs, without downloading BUSI
(Al-Dhabyani et al., "Dataset of breast ultrasound images", Data in Brief
2020, https://doi.org/10.1016/j.dib.2019.104863). The output is laid out
exactly like the raw BUSI release (``docs/architecture.md``; DESIGN §3)::

    OUT/benign/benign (1).png            3-channel grey image
    OUT/benign/benign (1)_mask.png       lesion = 255, background = 0
    OUT/benign/benign (1)_mask_1.png     sometimes: a second lesion, or the
                                         same lesion split in two files;
                                         OR-merge the mask files
    OUT/malignant/malignant (1).png ...
    OUT/normal/normal (1).png + normal (1)_mask.png (all zero)

Masks are mostly 1-channel; on purpose a few are 3-channel (BGR, lesion
255 in every channel) or 4-channel (BGRA, alpha = 255 everywhere), as in
the real data, so loaders must reduce channels over colour only.

How an image is made (:func:`render_case`):

1. *Tissue echogenicity* ``T(y, x)``: a base level plus wavy horizontal
   bands (layered breast tissue), a bright near-field skin line, a
   laterally elongated low-frequency texture, and depth attenuation
   ``exp(-a * y / H)`` (:class:`TissueTraits`).
2. *Lesions* (benign, malignant): a polygon from a polar radius
   ``r(theta)`` on an ellipse of the drawn aspect ratio, perturbed by
   low-order harmonics (lobulation) and narrow radial spikes
   (spiculation). Inside, ``T`` is scaled by the drawn darkness
   (hypoechoic) with low-frequency heterogeneity; the boundary is blurred
   by the drawn margin width; an optional echogenic rim (halo); below it,
   posterior enhancement (gain > 0) or shadowing (gain < 0) decaying with
   depth. The mask is the hard polygon.
3. *Distractors*: with ``duct_prob`` an unlabelled dark elongated duct or
   small cyst (any class, most often normal), so "dark blob => lesion" is
   not a perfect rule.
4. *Speckle*: ``T`` times mean-1 Rayleigh noise, laterally elongated by a
   small anisotropic blur, then log-compressed with a random gain.

Class-conditional trait distributions (defaults in :data:`DEFAULT_TRAITS`;
every one overlaps between benign and malignant, so no single trait or
pixel statistic gives the class away):

============================  ======================  ======================
trait                         benign                  malignant
============================  ======================  ======================
area / image area             log-U(0.03, 0.16)       log-U(0.04, 0.25)
aspect (width / height)       N(1.45, 0.30)           N(1.00, 0.30)
lobulation (harmonic amp.)    U(0.00, 0.12)           U(0.06, 0.30)
spicules: prob., amplitude    0.05, U(0.05, 0.20)     0.60, U(0.10, 0.35)
darkness (echo factor)        U(0.25, 0.60)           U(0.15, 0.50)
heterogeneity (texture std)   U(0.05, 0.20)           U(0.15, 0.40)
margin blur (x radius)        U(0.02, 0.06)           U(0.04, 0.14)
posterior gain                N(+0.30, 0.25)          N(-0.30, 0.25)
echogenic halo prob.          0.10                    0.35
``_mask_1`` prob.             0.12                    0.06
duct / cyst distractor prob.  0.20                    0.20   (normal: 0.60)
============================  ======================  ======================

Aspect ratios are clipped to ``ASPECT_CLIP``. The class mix defaults to
BUSI's (437 benign, 210 malignant, 133 normal: 56/27/17 %).
"""
import os
import os.path as osp
import shutil
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

CLASS_NAMES: Tuple[str, ...] = ('benign', 'malignant', 'normal')
#: BUSI's class mix (437 / 210 / 133 of 780 images).
BUSI_CLASS_RATIO: Tuple[float, ...] = (437 / 780, 210 / 780, 133 / 780)
#: Default image side range in pixels (inclusive), small for CPU training.
DEFAULT_SIZE_RANGE: Tuple[int, int] = (160, 224)
#: Lesion label value in the saved masks (BUSI convention).
MASK_VALUE = 255
#: Range aspect ratios (width / height) are clipped to.
ASPECT_CLIP: Tuple[float, float] = (0.5, 2.6)
#: Number of polygon vertices of a lesion outline.
OUTLINE_POINTS = 256
#: Fraction of the image side kept free between a lesion and the border.
BORDER_MARGIN = 0.04


@dataclass(frozen=True)
class ClassTraits:
    """Class-conditional distributions of one class's image traits.

    Ranges ``(lo, hi)`` are sampled uniformly unless said otherwise.

    Args:
        has_lesion (bool): Whether images of the class contain a lesion.
        area_frac (tuple): Log-uniform range of lesion area / image area.
        aspect_mean (float): Mean of the lesion width / height (normal).
        aspect_std (float): Std of the lesion width / height.
        lobulation (tuple): Total amplitude of harmonics 2..5 of the radius.
        spicule_prob (float): Probability that the outline has spicules.
        spicule_amp (tuple): Spike height as a fraction of the radius.
        darkness (tuple): Echo level inside the lesion relative to tissue.
        heterogeneity (tuple): Std of the internal low-frequency texture.
        margin_blur (tuple): Boundary blur sigma as a fraction of radius.
        posterior_mean (float): Mean posterior gain (> 0 enhancement,
            < 0 shadowing).
        posterior_std (float): Std of the posterior gain.
        halo_prob (float): Probability of an echogenic rim.
        extra_mask_prob (float): Probability of a ``_mask_1`` file.
        duct_prob (float): Probability of an unlabelled duct/cyst.
    """
    has_lesion: bool = True
    area_frac: Tuple[float, float] = (0.03, 0.16)
    aspect_mean: float = 1.45
    aspect_std: float = 0.30
    lobulation: Tuple[float, float] = (0.0, 0.12)
    spicule_prob: float = 0.05
    spicule_amp: Tuple[float, float] = (0.05, 0.20)
    darkness: Tuple[float, float] = (0.25, 0.60)
    heterogeneity: Tuple[float, float] = (0.05, 0.20)
    margin_blur: Tuple[float, float] = (0.02, 0.06)
    posterior_mean: float = 0.30
    posterior_std: float = 0.25
    halo_prob: float = 0.10
    extra_mask_prob: float = 0.12
    duct_prob: float = 0.20


@dataclass(frozen=True)
class TissueTraits:
    """Distributions of the background tissue and the imaging chain.

    Args:
        base_level (tuple): Mean tissue echogenicity.
        num_layers (tuple): Inclusive range of horizontal tissue bands.
        layer_amp (tuple): Echo change of a band (negative = darker).
        layer_width (tuple): Band half-width as a fraction of the height.
        layer_wave (tuple): Band waviness amplitude, fraction of height.
        skin_depth (tuple): Depth of the bright skin line, fraction of H.
        skin_amp (float): Echo added by the skin line.
        texture_amp (tuple): Std of the low-frequency tissue texture.
        texture_sigma (tuple): Texture blur (x, y) as fractions of width.
        attenuation (tuple): Depth attenuation coefficient ``a``.
        speckle_sigma (tuple): Speckle grain blur (x, y) in pixels.
        compression (tuple): Log-compression strength ``k`` in
            ``log1p(k I) / log1p(k)``.
        gain (tuple): Display gain after compression.
        duct_area_frac (tuple): Log-uniform area range of a duct/cyst.
        duct_aspect (tuple): Width / height range of a duct (elongated).
        duct_darkness (tuple): Echo level inside a duct/cyst.
        cyst_prob (float): Probability a distractor is a round cyst rather
            than an elongated duct.
        num_distractors (tuple): Inclusive range of the number of
            distractors drawn when an image gets any (``duct_prob``).
        lesion_depth (tuple): Range of a lesion centre's depth, as a
            fraction of the image height.
    """
    base_level: Tuple[float, float] = (0.35, 0.55)
    num_layers: Tuple[int, int] = (3, 7)
    layer_amp: Tuple[float, float] = (-0.20, 0.30)
    layer_width: Tuple[float, float] = (0.02, 0.10)
    layer_wave: Tuple[float, float] = (0.0, 0.04)
    skin_depth: Tuple[float, float] = (0.02, 0.06)
    skin_amp: float = 0.45
    texture_amp: Tuple[float, float] = (0.08, 0.20)
    texture_sigma: Tuple[float, float] = (0.04, 0.012)
    attenuation: Tuple[float, float] = (0.2, 0.9)
    speckle_sigma: Tuple[float, float] = (1.0, 0.5)
    compression: Tuple[float, float] = (4.0, 12.0)
    gain: Tuple[float, float] = (0.85, 1.15)
    duct_area_frac: Tuple[float, float] = (0.006, 0.05)
    duct_aspect: Tuple[float, float] = (2.0, 5.0)
    duct_darkness: Tuple[float, float] = (0.10, 0.45)
    cyst_prob: float = 0.3
    num_distractors: Tuple[int, int] = (1, 1)
    lesion_depth: Tuple[float, float] = (0.25, 0.75)


@dataclass(frozen=True)
class Annotations:
    """Marks that scanners and sonographers burn into the image.

    Real BUSI images carry calipers (``+`` marks with a dotted line at the
    lesion's extent), measurement text, a depth ruler and orientation
    markers. They are bright, sharp and often right next to the lesion, so
    they are a shortcut a model can learn and a source of false edges.
    All probabilities are per image; a probability of 0 draws nothing.

    Args:
        caliper_prob (float): Probability of a caliper pair on an image
            with a lesion (placed at the lesion's horizontal extent).
        caliper_prob_normal (float): Probability of a caliper pair on an
            image without a lesion (placed on random tissue).
        text_prob (float): Probability of burned-in text lines.
        ruler_prob (float): Probability of a depth ruler at one side.
        marker_prob (float): Probability of a small orientation marker.
        intensity (tuple): Grey level range of the marks.
    """
    caliper_prob: float = 0.0
    caliper_prob_normal: float = 0.0
    text_prob: float = 0.0
    ruler_prob: float = 0.0
    marker_prob: float = 0.0
    intensity: Tuple[int, int] = (200, 255)


NO_ANNOTATIONS = Annotations()


DEFAULT_TRAITS: Dict[str, ClassTraits] = {
    'benign': ClassTraits(),
    'malignant': ClassTraits(
        area_frac=(0.04, 0.25),
        aspect_mean=1.00,
        lobulation=(0.06, 0.30),
        spicule_prob=0.60,
        spicule_amp=(0.10, 0.35),
        darkness=(0.15, 0.50),
        heterogeneity=(0.15, 0.40),
        margin_blur=(0.04, 0.14),
        posterior_mean=-0.30,
        halo_prob=0.35,
        extra_mask_prob=0.06),
    'normal': ClassTraits(has_lesion=False, extra_mask_prob=0.0,
                          duct_prob=0.60),
}
DEFAULT_TISSUE = TissueTraits()


@dataclass(frozen=True)
class SyntheticStyle:
    """A named data style: one distribution of images the generator draws.

    A method tuned on one style of synthetic data has learnt that style;
    judging it on several (one of them never used for tuning, see
    :data:`HELDOUT_STYLE`) tells what carries over.

    Args:
        description (str): One line, shown by ``--list-styles``.
        traits (dict): Class name -> :class:`ClassTraits`.
        tissue (TissueTraits): Background and imaging chain.
        annotations (Annotations): Marks burned into the image.
        size_range (tuple): Inclusive range of each image side, pixels.
    """
    description: str
    traits: Dict[str, ClassTraits]
    tissue: TissueTraits = DEFAULT_TISSUE
    annotations: Annotations = NO_ANNOTATIONS
    size_range: Tuple[int, int] = DEFAULT_SIZE_RANGE


def _restyle(base: Dict[str, ClassTraits],
             **per_class: dict) -> Dict[str, ClassTraits]:
    """Copy of ``base`` with some fields of some classes replaced."""
    return {name: replace(traits, **per_class.get(name, {}))
            for name, traits in base.items()}


#: The generator's named styles. ``default`` is what every result before
#: 2026-12 was measured on; the others shift one aspect of the data each.
STYLES: Dict[str, SyntheticStyle] = {
    'default': SyntheticStyle(
        'layered tissue, Rayleigh speckle, hypoechoic lesions, some ducts '
        'and cysts', DEFAULT_TRAITS),
    'speckle': SyntheticStyle(
        'coarse heavy speckle, near-isoechoic low-contrast lesions with '
        'blurred margins',
        _restyle(DEFAULT_TRAITS,
                 benign=dict(darkness=(0.55, 0.80),
                             margin_blur=(0.05, 0.12)),
                 malignant=dict(darkness=(0.45, 0.75),
                                margin_blur=(0.08, 0.20))),
        replace(DEFAULT_TISSUE, speckle_sigma=(2.2, 1.2),
                compression=(10.0, 30.0), texture_amp=(0.15, 0.30))),
    'shadowing': SyntheticStyle(
        'strong posterior shadowing (malignant) and enhancement (benign, '
        'cysts), steep depth attenuation',
        _restyle(DEFAULT_TRAITS,
                 benign=dict(posterior_mean=0.8, posterior_std=0.3),
                 malignant=dict(posterior_mean=-0.75, posterior_std=0.15)),
        replace(DEFAULT_TISSUE, attenuation=(0.8, 1.8), cyst_prob=0.6)),
    'crowded': SyntheticStyle(
        'many lesion-like distractors (dark ducts and round cysts) in '
        'every class',
        _restyle(DEFAULT_TRAITS, benign=dict(duct_prob=0.8),
                 malignant=dict(duct_prob=0.8),
                 normal=dict(duct_prob=1.0)),
        replace(DEFAULT_TISSUE, num_distractors=(1, 4), cyst_prob=0.6,
                duct_area_frac=(0.01, 0.08), duct_darkness=(0.15, 0.5))),
    'annotated': SyntheticStyle(
        'calipers at the lesion, burned-in text, depth ruler and '
        'orientation marker', DEFAULT_TRAITS,
        annotations=Annotations(caliper_prob=0.7, caliper_prob_normal=0.2,
                                text_prob=0.8, ruler_prob=0.6,
                                marker_prob=0.5)),
    'varied': SyntheticStyle(
        'varied image size and aspect (96-320 px per side), depth, gain '
        'and attenuation',
        DEFAULT_TRAITS,
        replace(DEFAULT_TISSUE, gain=(0.6, 1.4), attenuation=(0.1, 1.6),
                base_level=(0.25, 0.65), lesion_depth=(0.15, 0.85)),
        size_range=(96, 320)),
}
#: The style decided (2026-12-05, before any tuning on the new styles) as
#: the held-out development style: never used to choose a method setting,
#: always reported separately.
HELDOUT_STYLE = 'annotated'


def get_style(name: str) -> SyntheticStyle:
    """The :class:`SyntheticStyle` called ``name``, with a clear error."""
    if name not in STYLES:
        raise KeyError(f'unknown synthetic style {name!r}; known: '
                       f'{sorted(STYLES)}')
    return STYLES[name]


# ------------------------------------------------------------ primitives
def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _log_uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int],
                  sigma_xy: Tuple[float, float]) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise blurred by (sigma_x, sigma_y)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(
        noise, (0, 0), sigmaX=max(sigma_xy[0], 0.1),
        sigmaY=max(sigma_xy[1], 0.1), borderType=cv2.BORDER_REFLECT)
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(sigma, 0.1),
                            borderType=cv2.BORDER_REFLECT)


def _outline(rng: np.random.Generator, center: Tuple[float, float],
             semi_axes: Tuple[float, float], lobulation: float,
             spicule_amp: float) -> np.ndarray:
    """Polygon (OUTLINE_POINTS, 2) of a perturbed ellipse, in (x, y)."""
    theta = np.linspace(0, 2 * np.pi, OUTLINE_POINTS, endpoint=False)
    radius = np.ones_like(theta)
    if lobulation > 0:
        orders = np.arange(2, 6)
        weights = rng.dirichlet(np.ones(len(orders))) * lobulation
        phases = rng.uniform(0, 2 * np.pi, len(orders))
        radius += (weights[:, None] *
                   np.cos(orders[:, None] * theta + phases[:, None])).sum(0)
    if spicule_amp > 0:
        num_spikes = int(rng.integers(5, 14))
        centers = rng.uniform(0, 2 * np.pi, num_spikes)
        widths = rng.uniform(0.03, 0.08, num_spikes)
        heights = spicule_amp * rng.uniform(0.5, 1.0, num_spikes)
        # Wrapped angular distance to each spike centre.
        dist = np.angle(np.exp(1j * (theta[None] - centers[:, None])))
        radius += (heights[:, None] *
                   np.exp(-0.5 * (dist / widths[:, None])**2)).sum(0)
    radius = np.clip(radius, 0.3, None)
    tilt = rng.uniform(-0.3, 0.3)
    x = semi_axes[0] * radius * np.cos(theta)
    y = semi_axes[1] * radius * np.sin(theta)
    xr = x * np.cos(tilt) - y * np.sin(tilt)
    yr = x * np.sin(tilt) + y * np.cos(tilt)
    return np.stack([xr + center[0], yr + center[1]], axis=1)


def _fill(points: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _place_blob(rng: np.random.Generator, shape: Tuple[int, int],
                area_frac: float, aspect: float, lobulation: float,
                spicule_amp: float, depth_range: Tuple[float, float],
                avoid: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """A blob mask of about ``area_frac`` of the image, inside the image.

    Returns None if no position avoiding ``avoid`` was found.
    """
    h, w = shape
    margin = BORDER_MARGIN * min(h, w)
    # Ellipse pi * a * b = area with a / b = aspect, shrunk to fit.
    b = np.sqrt(area_frac * h * w / (np.pi * aspect))
    a = aspect * b
    extent = 1.0 + lobulation + spicule_amp
    scale = min(1.0, (w / 2 - margin) / (a * extent),
                (h / 2 - margin) / (b * extent))
    a, b = a * scale, b * scale
    for _ in range(8):
        # a blob scaled to the full width gives an empty range up to
        # rounding (hi < lo by ~1e-15), which numpy refuses
        left = margin + a * extent
        cx = rng.uniform(left, max(left, w - margin - a * extent))
        lo = max(depth_range[0] * h, margin + b * extent)
        hi = min(depth_range[1] * h, h - margin - b * extent)
        cy = rng.uniform(lo, max(lo, hi))
        mask = _fill(
            _outline(rng, (cx, cy), (a, b), lobulation, spicule_amp), shape)
        if not mask.any():
            continue
        if avoid is None or not (
                cv2.dilate(mask.astype(np.uint8), np.ones((5, 5))) &
                avoid).any():
            return mask
    return None


# ------------------------------------------------------------- rendering
def _tissue(rng: np.random.Generator, shape: Tuple[int, int],
            tissue: TissueTraits) -> np.ndarray:
    """Layered, textured echogenicity map in about [0, 1] (before depth
    attenuation)."""
    h, w = shape
    yy = np.arange(h, dtype=np.float32)[:, None] / h
    xx = np.arange(w, dtype=np.float32)[None, :] / w
    echo = np.full(shape, _uniform(rng, tissue.base_level), np.float32)
    num_layers = int(rng.integers(tissue.num_layers[0],
                                  tissue.num_layers[1] + 1))
    for _ in range(num_layers):
        depth = rng.uniform(0.1, 1.0)
        wave = _uniform(rng, tissue.layer_wave) * np.sin(
            2 * np.pi * xx / rng.uniform(0.5, 2.0) + rng.uniform(0, 2 * np.pi))
        width = _uniform(rng, tissue.layer_width)
        echo += _uniform(rng, tissue.layer_amp) * np.exp(
            -(((yy - depth - wave) / width)**2))
    skin = _uniform(rng, tissue.skin_depth)
    echo += tissue.skin_amp * np.exp(-((yy - skin) / (0.5 * skin))**2)
    sigma = (tissue.texture_sigma[0] * w, tissue.texture_sigma[1] * w)
    echo *= 1 + _uniform(rng, tissue.texture_amp) * _smooth_noise(
        rng, shape, sigma)
    return np.clip(echo, 0.02, None)


def _apply_dark_region(rng: np.random.Generator, echo: np.ndarray,
                       mask: np.ndarray, darkness: float,
                       heterogeneity: float, margin_sigma: float,
                       halo_amp: float) -> np.ndarray:
    """Darken ``echo`` inside ``mask`` with a blurred, textured boundary."""
    soft = _blur(mask.astype(np.float32), margin_sigma)
    inner = darkness * (1 + heterogeneity * _smooth_noise(
        rng, echo.shape, (2 * margin_sigma + 1, margin_sigma + 1)))
    out = echo * (1 - soft) + echo * np.clip(inner, 0.02, None) * soft
    if halo_amp > 0:
        ring = np.clip(_blur(mask.astype(np.float32), 2 * margin_sigma + 1)
                       - soft, 0, None)
        out += halo_amp * ring / (ring.max() + 1e-6) * echo.mean()
    return out


def _posterior(rng: np.random.Generator, echo: np.ndarray, mask: np.ndarray,
               gain: float) -> np.ndarray:
    """Brighten (gain > 0) or shadow (gain < 0) the column under ``mask``."""
    h, w = mask.shape
    columns = mask.any(0)
    if not columns.any() or gain == 0:
        return echo
    bottom = h - 1 - mask[::-1].argmax(0)
    profile = _blur(columns.astype(np.float32)[None], 0.03 * w)[0]
    yy = np.arange(h, dtype=np.float32)[:, None]
    decay = rng.uniform(0.3, 1.0) * h
    below = np.clip(yy - bottom[None], 0, None)
    effect = gain * profile[None] * np.exp(-below / decay) * (yy > bottom)
    effect = _blur(effect.astype(np.float32), 2.0)
    return echo * np.clip(1 + effect, 0.05, None)


def _speckle(rng: np.random.Generator, echo: np.ndarray,
             tissue: TissueTraits) -> np.ndarray:
    """Multiplicative Rayleigh speckle, log-compressed to uint8 grey."""
    h = echo.shape[0]
    # Rayleigh with scale s has mean s * sqrt(pi / 2): normalise to mean 1.
    speckle = rng.rayleigh(1.0 / np.sqrt(np.pi / 2), echo.shape)
    speckle = cv2.GaussianBlur(
        speckle.astype(np.float32), (0, 0), sigmaX=tissue.speckle_sigma[0],
        sigmaY=tissue.speckle_sigma[1], borderType=cv2.BORDER_REFLECT)
    attenuation = np.exp(-_uniform(rng, tissue.attenuation) *
                         np.arange(h, dtype=np.float32)[:, None] / h)
    intensity = echo * attenuation * speckle
    k = _uniform(rng, tissue.compression)
    grey = np.log1p(k * intensity) / np.log1p(k) * _uniform(rng, tissue.gain)
    return np.clip(np.round(grey * 255), 0, 255).astype(np.uint8)


def render_case(
    rng: np.random.Generator,
    cls_name: str,
    size: Optional[Tuple[int, int]] = None,
    size_range: Tuple[int, int] = DEFAULT_SIZE_RANGE,
    traits: Optional[Dict[str, ClassTraits]] = None,
    tissue: TissueTraits = DEFAULT_TISSUE,
    annotations: Annotations = NO_ANNOTATIONS,
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Render one synthetic ultrasound image and its lesion mask file(s).

    Args:
        rng (np.random.Generator): Source of all randomness of this image.
        cls_name (str): A key of ``traits`` (``'benign'``, ``'malignant'``,
            ``'normal'`` by default).
        size (tuple, optional): ``(height, width)``; drawn from
            ``size_range`` when None.
        size_range (tuple): Inclusive range of each side, in pixels.
        traits (dict, optional): Class name -> :class:`ClassTraits`;
            :data:`DEFAULT_TRAITS` when None.
        tissue (TissueTraits): Background and imaging-chain distributions.
        annotations (Annotations): Marks burned into the image (none by
            default); they never change the mask.

    Returns:
        tuple: ``image`` (H, W, 3) uint8 grey, and a list of (H, W) uint8
        masks with values {0, 255}: one per mask file (``_mask``,
        ``_mask_1``), to be OR-merged; a single all-zero mask when the
        class has no lesion.
    """
    traits = DEFAULT_TRAITS if traits is None else traits
    if cls_name not in traits:
        raise KeyError(f'unknown class {cls_name!r}; known: {sorted(traits)}')
    cls = traits[cls_name]
    if size is None:
        size = tuple(
            int(s) for s in rng.integers(size_range[0], size_range[1] + 1, 2))
    shape = (int(size[0]), int(size[1]))
    echo = _tissue(rng, shape, tissue)

    masks: List[np.ndarray] = []
    if cls.has_lesion:
        masks = _render_lesions(rng, echo, cls, tissue.lesion_depth)
        lesion = np.logical_or.reduce(masks)
        echo = _lesion_appearance(rng, echo, lesion, cls)

    if rng.random() < cls.duct_prob:
        lo, hi = tissue.num_distractors
        # no draw for a fixed count: the default style stays byte-identical
        count = lo if lo == hi else int(rng.integers(lo, hi + 1))
        for _ in range(count):
            echo = _add_distractor(rng, echo, tissue,
                                   avoid=np.logical_or.reduce(masks)
                                   if masks else None)

    grey = _speckle(rng, echo, tissue)
    if annotations != NO_ANNOTATIONS:
        grey = _annotate(rng, grey, np.logical_or.reduce(masks)
                         if masks else None, annotations)
    image = np.repeat(grey[..., None], 3, axis=2)
    if not masks:
        masks = [np.zeros(shape, bool)]
    return image, [m.astype(np.uint8) * MASK_VALUE for m in masks]


def _render_lesions(rng: np.random.Generator, echo: np.ndarray,
                    cls: ClassTraits,
                    depth_range: Tuple[float, float] = (0.25, 0.75)
                    ) -> List[np.ndarray]:
    """Lesion mask file(s): one, two lesions, or one lesion split in two."""
    shape = echo.shape

    def draw_blob(area_scale=1.0, avoid=None):
        aspect = float(np.clip(
            rng.normal(cls.aspect_mean, cls.aspect_std), *ASPECT_CLIP))
        spicules = (_uniform(rng, cls.spicule_amp)
                    if rng.random() < cls.spicule_prob else 0.0)
        return _place_blob(
            rng, shape, _log_uniform(rng, cls.area_frac) * area_scale,
            aspect, _uniform(rng, cls.lobulation), spicules,
            depth_range=depth_range, avoid=avoid)

    main = draw_blob()
    if main is None:  # cannot happen without ``avoid``; keep types honest
        raise RuntimeError('failed to place a lesion')
    if rng.random() >= cls.extra_mask_prob:
        return [main]
    if rng.random() < 0.5:
        second = draw_blob(area_scale=rng.uniform(0.3, 0.6), avoid=main)
        if second is not None:
            return [main, second]
    # Split the lesion along a random line through its centroid.
    ys, xs = np.nonzero(main)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    side = ((xx - xs.mean()) * np.cos(angle) +
            (yy - ys.mean()) * np.sin(angle)) >= 0
    first, rest = main & side, main & ~side
    if first.any() and rest.any():
        return [first, rest]
    return [main]


def _lesion_appearance(rng: np.random.Generator, echo: np.ndarray,
                       lesion: np.ndarray, cls: ClassTraits) -> np.ndarray:
    """Hypoechoic interior, margin, halo and posterior features."""
    radius = np.sqrt(lesion.sum() / np.pi)
    halo = (rng.uniform(0.3, 0.8) if rng.random() < cls.halo_prob else 0.0)
    echo = _apply_dark_region(
        rng, echo, lesion, _uniform(rng, cls.darkness),
        _uniform(rng, cls.heterogeneity),
        _uniform(rng, cls.margin_blur) * radius, halo)
    return _posterior(rng, echo, lesion,
                      rng.normal(cls.posterior_mean, cls.posterior_std))


def _add_distractor(rng: np.random.Generator, echo: np.ndarray,
                    tissue: TissueTraits,
                    avoid: Optional[np.ndarray]) -> np.ndarray:
    """An unlabelled dark duct (elongated) or small cyst (round)."""
    cyst = rng.random() < tissue.cyst_prob
    aspect = rng.uniform(0.9, 1.3) if cyst else _uniform(
        rng, tissue.duct_aspect)
    blob = _place_blob(
        rng, echo.shape, _log_uniform(rng, tissue.duct_area_frac), aspect,
        rng.uniform(0.0, 0.08), 0.0, depth_range=(0.15, 0.8), avoid=avoid)
    if blob is None:
        return echo
    echo = _apply_dark_region(rng, echo, blob,
                              _uniform(rng, tissue.duct_darkness),
                              rng.uniform(0.0, 0.15), rng.uniform(0.5, 1.5),
                              0.0)
    if cyst:  # fluid: posterior enhancement, like a benign lesion
        echo = _posterior(rng, echo, blob, rng.uniform(0.1, 0.5))
    return echo


def _annotate(rng: np.random.Generator, grey: np.ndarray,
              lesion: Optional[np.ndarray],
              marks: Annotations) -> np.ndarray:
    """Burn calipers, text, a depth ruler and a marker into ``grey``."""
    out = grey.copy()
    h, w = out.shape

    def level() -> int:
        return int(rng.integers(marks.intensity[0], marks.intensity[1] + 1))

    arm = max(2, int(round(0.025 * min(h, w))))
    has_lesion = lesion is not None and lesion.any()
    prob = marks.caliper_prob if has_lesion else marks.caliper_prob_normal
    if rng.random() < prob:
        if has_lesion:
            ys, xs = np.nonzero(lesion)
            row = int(rng.integers(ys.min(), ys.max() + 1))
            cols = np.flatnonzero(lesion[row])
            ends = [(int(cols.min()), row), (int(cols.max()), row)]
        else:
            row = int(rng.integers(h // 4, 3 * h // 4))
            left = int(rng.integers(w // 8, w // 2))
            ends = [(left, row),
                    (min(w - 1, left + int(rng.integers(w // 8, w // 3))),
                     row)]
        value = level()
        for x, y in ends:
            cv2.line(out, (x - arm, y), (x + arm, y), value, 1)
            cv2.line(out, (x, y - arm), (x, y + arm), value, 1)
        (x0, y0), (x1, _) = ends
        for x in range(x0 + 2 * arm, x1 - arm, 3):  # dotted line
            out[y0, x] = value
    if rng.random() < marks.text_prob:
        scale = 0.25 * min(h, w) / 100
        for i in range(int(rng.integers(1, 4))):
            text = ''.join(rng.choice(list('0123456789ABCDEFcm.: '),
                                      int(rng.integers(4, 10))))
            origin = (int(rng.integers(2, max(3, w // 3))),
                      int((i + 1) * 12 * scale * 4))
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_PLAIN, scale * 2,
                        level(), 1)
    if rng.random() < marks.ruler_prob:
        x = w - 3 if rng.random() < 0.5 else 2
        for y in range(0, h, max(4, h // 16)):
            cv2.line(out, (x - 1, y), (x + 1, y), level(), 1)
    if rng.random() < marks.marker_prob:
        cx = int(rng.integers(arm, w - arm))
        cy = int(rng.integers(h - 4 * arm, h - arm))
        pts = np.array([[cx - arm, cy + arm], [cx + arm, cy + arm],
                        [cx, cy - arm]], np.int32)
        cv2.fillPoly(out, [pts], level())
    return out


# --------------------------------------------------------------- data set
def class_counts(num: int, class_ratio: Sequence[float],
                 class_names: Sequence[str] = CLASS_NAMES) -> Dict[str, int]:
    """Split ``num`` images by ``class_ratio`` (largest remainder).

    Every class with a positive ratio gets at least one image when
    ``num >= len(class_names)``.
    """
    ratio = np.asarray(class_ratio, dtype=np.float64)
    if len(ratio) != len(class_names) or (ratio < 0).any() or \
            ratio.sum() <= 0:
        raise ValueError(f'class_ratio must hold {len(class_names)} '
                         f'non-negative numbers, got {tuple(class_ratio)}')
    if num < 0:
        raise ValueError(f'num must be >= 0, got {num}')
    share = ratio / ratio.sum() * num
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), kind='stable')
    counts[order[:num - counts.sum()]] += 1
    if num >= len(class_names):
        for i in np.flatnonzero((counts == 0) & (ratio > 0)):
            counts[i] += 1
            counts[np.argmax(counts)] -= 1
    return {name: int(n) for name, n in zip(class_names, counts)}


def _encode_mask(mask: np.ndarray, channels: int) -> np.ndarray:
    """Store a (H, W) {0, 255} mask with 1, 3 (BGR) or 4 (BGRA) channels;
    alpha is opaque (255) everywhere."""
    if channels == 1:
        return mask
    planes = [mask] * 3
    if channels == 4:
        planes.append(np.full_like(mask, MASK_VALUE))
    return np.stack(planes, axis=2)


def _write_png(path: str, array: np.ndarray) -> None:
    ok, data = cv2.imencode('.png', array)
    if not ok:
        raise IOError(f'could not encode {path}')
    with open(path, 'wb') as f:
        f.write(data.tobytes())


def generate_synthetic_busi(
    out_dir: str,
    num: int = 60,
    seed: int = 0,
    size_range: Tuple[int, int] = DEFAULT_SIZE_RANGE,
    class_ratio: Sequence[float] = BUSI_CLASS_RATIO,
    rgb_mask_prob: float = 0.08,
    rgba_mask_prob: float = 0.05,
    overwrite: bool = False,
    traits: Optional[Dict[str, ClassTraits]] = None,
    tissue: Optional[TissueTraits] = None,
    style: str = 'default',
) -> dict:
    """Write a synthetic data set in the raw BUSI layout.

    Image ``<cls> (k)`` is rendered from its own seed sequence
    ``(seed, class index, k)``, so output is byte-identical for the same
    arguments and an image does not change when ``num`` grows.

    Args:
        out_dir (str): Output root; must be empty or absent unless
            ``overwrite``.
        num (int): Number of images.
        seed (int): Random seed.
        size_range (tuple): Inclusive range of each image side, in pixels.
        class_ratio (sequence): Share of benign, malignant, normal images.
        rgb_mask_prob (float): Probability a mask file is stored 3-channel.
        rgba_mask_prob (float): Probability a mask file is stored RGBA.
            When ``num >= 2``, at least one of each kind is written.
        overwrite (bool): Write into a non-empty ``out_dir``; its class
            folders are deleted first so no stale image survives.
        traits (dict, optional): Class name -> :class:`ClassTraits`; the
            style's when None.
        tissue (TissueTraits, optional): Background and imaging-chain
            distributions; the style's when None.
        style (str): A key of :data:`STYLES`: the traits, tissue and
            annotations not given explicitly. ``size_range`` is taken as
            given (callers pass ``STYLES[style].size_range`` for the
            style's own).

    Returns:
        dict: ``out_dir``, ``num``, ``seed``, ``style``, ``counts``,
        ``num_mask_files``, ``num_extra_masks`` (``_mask_1`` files),
        ``mask_channels`` ({1: n, 3: n, 4: n} mask files) and ``images``
        (relative paths, POSIX).
    """
    if size_range[0] < 32 or size_range[1] < size_range[0]:
        raise ValueError(f'size_range must be (lo, hi) with 32 <= lo <= hi, '
                         f'got {tuple(size_range)}')
    if not 0 <= rgb_mask_prob + rgba_mask_prob <= 1:
        raise ValueError('rgb_mask_prob + rgba_mask_prob must lie in [0, 1],'
                         f' got {rgb_mask_prob} + {rgba_mask_prob}')
    if osp.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(
                f'{out_dir!r} is not empty; pass overwrite=True '
                '(--overwrite) to replace its class folders')
    chosen = get_style(style)
    traits = chosen.traits if traits is None else traits
    tissue = chosen.tissue if tissue is None else tissue
    counts = class_counts(num, class_ratio)
    unknown = set(counts) - set(traits)
    if unknown:
        raise KeyError(f'no traits for classes {sorted(unknown)}')

    cases = []  # (cls_name, k, image, masks, channels)
    for cls_idx, cls_name in enumerate(CLASS_NAMES):
        for k in range(1, counts[cls_name] + 1):
            rng = np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(cls_idx, k)))
            image, masks = render_case(
                rng, cls_name, size_range=size_range, traits=traits,
                tissue=tissue, annotations=chosen.annotations)
            channels = [
                int(rng.choice([1, 3, 4], p=[
                    1 - rgb_mask_prob - rgba_mask_prob, rgb_mask_prob,
                    rgba_mask_prob
                ])) for _ in masks
            ]
            cases.append((cls_name, k, image, masks, channels))
    _ensure_mask_formats(cases, seed)

    for cls_name in CLASS_NAMES:
        cls_dir = osp.join(out_dir, cls_name)
        if overwrite and osp.isdir(cls_dir):
            shutil.rmtree(cls_dir)
        os.makedirs(cls_dir, exist_ok=True)
    summary = dict(out_dir=out_dir, num=num, seed=seed, style=style,
                   counts=counts,
                   num_mask_files=0, num_extra_masks=0,
                   mask_channels={1: 0, 3: 0, 4: 0}, images=[])
    for cls_name, k, image, masks, channels in cases:
        stem = f'{cls_name} ({k})'
        _write_png(osp.join(out_dir, cls_name, f'{stem}.png'), image)
        summary['images'].append(f'{cls_name}/{stem}.png')
        for i, (mask, ch) in enumerate(zip(masks, channels)):
            suffix = '_mask' if i == 0 else f'_mask_{i}'
            _write_png(osp.join(out_dir, cls_name, f'{stem}{suffix}.png'),
                       _encode_mask(mask, ch))
            summary['mask_channels'][ch] += 1
        summary['num_mask_files'] += len(masks)
        summary['num_extra_masks'] += len(masks) - 1
    return summary


def _ensure_mask_formats(cases: list, seed: int) -> None:
    """Make sure 3- and 4-channel masks both occur (when ``num >= 2``), so
    every generated set exercises a loader's channel handling."""
    if len(cases) < 2:
        return
    # A stream no image uses (image streams are (class index, k)).
    rng = np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(len(CLASS_NAMES), )))
    order = rng.permutation(len(cases))
    for wanted in (3, 4):
        if any(wanted in case[4] for case in cases):
            continue
        for idx in order:
            channels = cases[idx][4]
            if all(ch == 1 for ch in channels):
                channels[0] = wanted
                break
