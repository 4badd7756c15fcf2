"""Pure drawing helpers shared by the visualizer, its hook and the inferencer.

Every function takes and returns ``uint8`` RGB images ``(H, W, 3)`` (numpy)
and never modifies its inputs. Masks are ``(H, W)`` arrays whose non-zero
pixels are the lesion.

Pseudo-label zones (see :mod:`hermes_mm.models.pseudo_labels.zones`) are
encoded per pixel by :func:`zone_map` with the codes of :data:`ZONES`:

========================  =====  =========================================
zone                      code   meaning
========================  =====  =========================================
``unreliable``            0      teacher confidence < ``tau_low``: ignored
``ambiguous``             1      ``tau_low <= confidence < tau_high``
``reliable_background``   2      ``>= tau_high``, pseudo-label background
``reliable_lesion``       3      ``>= tau_high``, pseudo-label lesion
``outside``               4      batch padding (not part of the image)
========================  =====  =========================================
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

Color = Tuple[int, int, int]
ArrayLike = Union[np.ndarray, torch.Tensor]

ZONES = ('unreliable', 'ambiguous', 'reliable_background', 'reliable_lesion',
         'outside')
DEFAULT_ZONE_PALETTE: Dict[str, Color] = dict(
    unreliable=(128, 128, 128),  # grey
    ambiguous=(255, 200, 0),  # amber
    reliable_background=(30, 144, 255),  # blue
    reliable_lesion=(220, 20, 60),  # red
    outside=(0, 0, 0))


def to_numpy(array: ArrayLike) -> np.ndarray:
    """A numpy copy of a numpy array or (any-device) tensor."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def resize_mask(mask: ArrayLike, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label map to ``shape[:2]``."""
    mask = to_numpy(mask)
    height, width = int(shape[0]), int(shape[1])
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(
        mask.astype(np.uint8), (width, height),
        interpolation=cv2.INTER_NEAREST)


def _text_scale(image: np.ndarray) -> Tuple[float, int]:
    """Font scale and thickness readable at the image's size."""
    short = min(image.shape[:2])
    scale = max(0.3, short / 400.0)
    return scale, max(1, int(round(scale * 1.5)))


def draw_text(image: np.ndarray,
              text: str,
              color: Color = (255, 255, 255),
              background: Optional[Color] = (0, 0, 0),
              origin: Tuple[int, int] = (2, 2)) -> np.ndarray:
    """Write ``text`` at ``origin`` (top-left corner of the text box).

    A filled ``background`` box keeps the text readable on any image.
    """
    out = np.ascontiguousarray(image.copy())
    if not text:
        return out
    scale, thickness = _text_scale(out)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    room = out.shape[1] - origin[0] - 3
    if width > room > 0:  # shrink to fit narrow images
        scale = max(0.2, scale * room / width)
        thickness = 1
        (width, height), baseline = cv2.getTextSize(text, font, scale,
                                                    thickness)
    x, y = origin
    if background is not None:
        cv2.rectangle(out, (x, y), (x + width + 2, y + height + baseline + 2),
                      background, -1)
    cv2.putText(out, text, (x + 1, y + height + 1), font, scale, color,
                thickness, cv2.LINE_AA)
    return out


def draw_contour(image: np.ndarray,
                 mask: ArrayLike,
                 color: Color = (255, 255, 0),
                 thickness: Optional[int] = None) -> np.ndarray:
    """Draw the outline of the non-zero region of ``mask`` on ``image``."""
    out = np.ascontiguousarray(image.copy())
    mask = resize_mask(mask, out.shape).astype(np.uint8)
    if not mask.any():
        return out
    if thickness is None:
        thickness = max(1, min(out.shape[:2]) // 150)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, thickness)
    return out


def blend_mask(image: np.ndarray,
               mask: ArrayLike,
               color: Color = (255, 0, 0),
               alpha: float = 0.5) -> np.ndarray:
    """Tint the non-zero pixels of ``mask`` with ``color`` (opacity
    ``alpha``); other pixels are unchanged."""
    out = image.copy()
    mask = resize_mask(mask, out.shape) > 0
    tint = np.asarray(color, dtype=np.float32)
    out[mask] = (out[mask] * (1 - alpha) + tint * alpha).astype(np.uint8)
    return out


def colorize(labels: ArrayLike,
             palette: Sequence[Color],
             default: Color = (0, 0, 0)) -> np.ndarray:
    """(H, W) integer map -> (H, W, 3) RGB with ``palette[label]``; labels
    outside the palette get ``default``."""
    labels = to_numpy(labels).astype(np.int64)
    lut = np.array(list(palette) + [default], dtype=np.uint8)
    index = np.where((labels >= 0) & (labels < len(palette)), labels,
                     len(palette))
    return lut[index]


def hconcat(panels: Sequence[np.ndarray],
            gap: int = 2,
            fill: Color = (255, 255, 255)) -> np.ndarray:
    """Put panels side by side (bottom-padded to the tallest), separated by
    ``gap`` columns of ``fill``."""
    height = max(p.shape[0] for p in panels)
    columns = []
    for i, panel in enumerate(panels):
        if i:
            columns.append(np.full((height, gap, 3), fill, np.uint8))
        pad = height - panel.shape[0]
        if pad:
            panel = np.concatenate(
                [panel, np.full((pad, panel.shape[1], 3), fill, np.uint8)])
        columns.append(panel)
    return np.concatenate(columns, axis=1)


def draw_legend(entries: Sequence[Tuple[str, Color]],
                height: int,
                width: int,
                background: Color = (255, 255, 255)) -> np.ndarray:
    """A ``(height, width)`` panel naming each colour: one row per entry,
    a swatch and the name, rows spread over the height."""
    out = np.full((height, width, 3), background, np.uint8)
    rows = max(1, len(entries))
    row = max(1, height // rows)
    swatch = max(2, min(row - 2, width // 6))
    for i, (name, color) in enumerate(entries):
        y = i * row + max(0, (row - swatch) // 2)
        cv2.rectangle(out, (1, y), (swatch, y + swatch - 1),
                      tuple(int(c) for c in color), -1)
        out = draw_text(out, name, color=(0, 0, 0), background=None,
                        origin=(swatch + 2, max(0, y - 2)))
    return out


#: Probabilities are floored to this many decimals on panels and overlays.
PROB_DECIMALS = 2


def format_prob(prob: float, decimals: int = PROB_DECIMALS) -> str:
    """A probability as shown to a reader, never rounded up to certainty.

    Floored (0.995 -> ``'0.99'``, 0.87 -> ``'0.87'``); a value that floors
    to 1 but is below it is shown as ``'>0.99'``, so ``'1.00'`` appears only
    for an exact 1.
    """
    scale = 10 ** decimals
    # the epsilon (1e-6 in probability) keeps float32 0.08 (0.0799999982)
    # from flooring to 0.07
    floored = np.floor(prob * scale + 1e-6 * scale) / scale
    if prob < 1 and floored >= 1:
        return f'>{1 - 1 / scale:.{decimals}f}'
    return f'{min(floored, 1.0):.{decimals}f}'


def draw_text_lines(image: np.ndarray, lines: Sequence[str],
                    **kwargs) -> np.ndarray:
    """Write ``lines`` top-down from the top-left corner (each as
    :func:`draw_text`, which shrinks a line too wide for the image)."""
    scale, thickness = _text_scale(image)
    (_, height), baseline = cv2.getTextSize('Ag', cv2.FONT_HERSHEY_SIMPLEX,
                                            scale, thickness)
    out = image
    for i, line in enumerate(lines):
        out = draw_text(out, line, origin=(2, 2 + i * (height + baseline + 4)),
                        **kwargs)
    return np.ascontiguousarray(out.copy()) if out is image else out


def lesion_text(lesion_area: int, image_area: int) -> str:
    """``'lesion 1234 px (4.2% of image)'`` or ``'no lesion found'``."""
    if lesion_area <= 0:
        return 'no lesion found'
    share = 100.0 * lesion_area / max(1, image_area)
    share_text = '<0.1%' if share < 0.1 else f'{share:.1f}%'
    return f'lesion {lesion_area} px ({share_text} of image)'


def mask_class_remark(class_name: str, lesion_area: int,
                      class_has_lesion: Optional[bool]) -> str:
    """A warning when the predicted class and mask disagree, else ''.

    ``class_has_lesion`` is whether the predicted class is one whose images
    show a lesion (``lesion_classes``); None when the data set has no
    lesion-free class (nothing to disagree about). The remark points to
    ``test_cfg.lesion_classes`` (``mask_decides_lesion``), which lets the
    mask decide lesion vs lesion-free.
    """
    if class_has_lesion is None or class_has_lesion == (lesion_area > 0):
        return ''
    # short enough to stay legible on a 400-pixel-wide image
    what = 'lesion drawn' if lesion_area > 0 else 'no lesion'
    return f'! {class_name} yet {what}: see mask_decides_lesion'


def overlay_lines(class_name: str, prob: float, lesion_area: int,
                  image_area: int,
                  class_has_lesion: Optional[bool] = None) -> list:
    """What an inference overlay says: the class with its (floored)
    probability, the lesion area, and any class/mask contradiction."""
    lines = [class_text(class_name, prob),
             lesion_text(lesion_area, image_area)]
    remark = mask_class_remark(class_name, lesion_area, class_has_lesion)
    return lines + ([remark] if remark else [])


def class_text(name: str, prob: float) -> str:
    """The class label written on predictions: ``'benign p=0.87'``
    (:func:`format_prob`: floored, ``'>0.99'`` rather than ``'1.00'``)."""
    return f'{name} p={format_prob(prob)}'


def zone_map(reliable: ArrayLike,
             ambiguous: ArrayLike,
             pseudo_label: ArrayLike,
             region: Optional[ArrayLike] = None,
             lesion_index: int = 1) -> np.ndarray:
    """Encode pixel zones as the codes of :data:`ZONES` (uint8, same shape).

    Args:
        reliable (array): Bool, pixels with confidence >= ``tau_high``.
        ambiguous (array): Bool, ``tau_low <= confidence < tau_high``.
        pseudo_label (array): Int, the teacher's class per pixel.
        region (array, optional): Bool, False on batch padding.
        lesion_index (int): Segmentation class index of the lesion.
    """
    reliable = to_numpy(reliable).astype(bool)
    ambiguous = to_numpy(ambiguous).astype(bool)
    lesion = to_numpy(pseudo_label) == lesion_index
    codes = np.zeros(reliable.shape, np.uint8)  # unreliable
    codes[ambiguous] = ZONES.index('ambiguous')
    codes[reliable & ~lesion] = ZONES.index('reliable_background')
    codes[reliable & lesion] = ZONES.index('reliable_lesion')
    if region is not None:
        codes[~to_numpy(region).astype(bool)] = ZONES.index('outside')
    return codes


def denormalize(inputs: torch.Tensor,
                mean: Optional[ArrayLike],
                std: Optional[ArrayLike],
                is_rgb: bool = True) -> np.ndarray:
    """Undo a data pre-processor's normalisation: (3, H, W) -> uint8 RGB.

    Args:
        inputs (Tensor): A normalised image (3, H, W).
        mean, std (array, optional): The pre-processor's per-channel values
            (any shape that flattens to 3); None means no normalisation.
        is_rgb (bool): Channel order of ``inputs`` (True when the
            pre-processor converted BGR to RGB).
    """
    image = inputs.detach().float().cpu()
    if std is not None:
        image = image * torch.as_tensor(to_numpy(std)).float().view(-1, 1, 1)
    if mean is not None:
        image = image + torch.as_tensor(to_numpy(mean)).float().view(-1, 1, 1)
    image = image.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    if not is_rgb:
        image = image[..., ::-1]
    return np.ascontiguousarray(image)


__all__ = [
    'DEFAULT_ZONE_PALETTE', 'PROB_DECIMALS', 'ZONES', 'blend_mask',
    'class_text', 'colorize', 'denormalize', 'draw_contour', 'draw_legend',
    'draw_text', 'draw_text_lines', 'format_prob', 'hconcat',
    'lesion_text', 'mask_class_remark', 'overlay_lines', 'resize_mask',
    'to_numpy', 'zone_map'
]
