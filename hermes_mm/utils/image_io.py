"""Image decoding that keeps images and masks aligned and 12-bit data bright.

Two silent errors of OpenCV's default decoding (``IMREAD_COLOR``, what
MMCV's ``LoadImageFromFile`` uses):

- **EXIF orientation.** ``IMREAD_COLOR`` rotates a JPEG/TIFF by its EXIF
  orientation tag, while masks (read ``IMREAD_UNCHANGED``) are never
  rotated; a phone or scanner export with orientation 6 is then 90 degrees
  off its mask (silently, when it is square). :func:`decode_image` ignores
  the tag (``IMREAD_IGNORE_ORIENTATION``), as mask decoding does, so both
  are read as stored. :func:`exif_orientation` reads the tag for messages
  (``tools/check_dataset.py`` and the mask-size error name it).
- **High bit depth.** ``IMREAD_COLOR`` turns a 16-bit file into 8 bits by
  dividing by 256, so 12-bit data (0-4095, common for ultrasound and other
  scanner exports stored as 16-bit PNG) becomes 0-15: a near-black image.
  :func:`decode_image` keeps the depth (``IMREAD_ANYDEPTH``) and scales by
  the data's bit depth (:func:`source_bit_depth`): full scale is
  ``2**bits - 1`` with ``bits`` the bit length of the image's maximum,
  rounded up to an even number (10, 12, 14 or 16), so 12-bit data maps
  4095 -> 255 whatever the brightest pixel of one image is; a 16-bit file
  holding values <= 255 is used as it is.
"""
import io
import warnings
from typing import Optional

import cv2
import mmcv
import numpy as np

#: The EXIF tag holding the orientation (TIFF/EXIF ``Orientation``).
EXIF_ORIENTATION_TAG = 0x0112

#: What each EXIF orientation value asks a viewer to do.
EXIF_ORIENTATIONS = {
    1: 'upright',
    2: 'mirrored left-right',
    3: 'rotated 180 degrees',
    4: 'mirrored top-bottom',
    5: 'mirrored and rotated 90 degrees',
    6: 'rotated 90 degrees clockwise',
    7: 'mirrored and rotated 90 degrees',
    8: 'rotated 90 degrees counter-clockwise',
}

#: Orientations whose displayed image has height and width swapped.
AXES_SWAPPED = (5, 6, 7, 8)

#: OpenCV read flags: keep the stored orientation and bit depth.
_KEEP = cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_ANYDEPTH
_FLAGS = {
    'color': cv2.IMREAD_COLOR | _KEEP,
    'color_ignore_orientation': cv2.IMREAD_COLOR | _KEEP,
    'grayscale': cv2.IMREAD_GRAYSCALE | _KEEP,
    'grayscale_ignore_orientation': cv2.IMREAD_GRAYSCALE | _KEEP,
}
#: The colour types :func:`decode_image` handles (MMCV's others: as MMCV).
COLOR_TYPES = tuple(_FLAGS)

_UINT8_BITS = 8


def exif_orientation(data: Optional[bytes]) -> int:
    """The EXIF orientation (1-8) of an encoded image; 1 if it has none.

    Args:
        data (bytes): The file content.

    Returns:
        int: 1 (upright, or no/unreadable tag) to 8.
    """
    if not data:
        return 1
    try:
        from PIL import Image
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # e.g. DecompressionBombWarning
            with Image.open(io.BytesIO(data)) as img:
                value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # not an image PIL reads: no orientation to report
        return 1
    return value if value in EXIF_ORIENTATIONS else 1


def describe_orientation(orientation: int) -> str:
    """``'EXIF orientation 6 (rotated 90 degrees clockwise for display)'``."""
    return (f'EXIF orientation {orientation} '
            f'({EXIF_ORIENTATIONS.get(orientation, "unknown")} for display)')


def source_bit_depth(img: np.ndarray) -> int:
    """The bit depth the data of a decoded image uses.

    8 for 8-bit images. For wider unsigned integer images, the bit length
    of the maximum value rounded up to an even number (4095 -> 12,
    1500 -> 12, 65535 -> 16), and 8 when every value is <= 255.

    Args:
        img (np.ndarray): A decoded image, any shape.

    Returns:
        int: 8, 10, 12, 14 or 16 (up to the dtype's width).
    """
    if img.dtype == np.uint8 or img.size == 0:
        return _UINT8_BITS
    bits = int(img.max()).bit_length()
    if bits <= _UINT8_BITS:
        return _UINT8_BITS
    return min(bits + bits % 2, np.iinfo(img.dtype).bits)


def to_uint8(img: np.ndarray, bit_depth: Optional[int] = None) -> np.ndarray:
    """Scale an unsigned integer image to 8 bits by its bit depth.

    Args:
        img (np.ndarray): uint8 (returned as is) or uint16 image.
        bit_depth (int, optional): Bits of the data (full scale
            ``2**bit_depth - 1``); None: :func:`source_bit_depth`.

    Returns:
        np.ndarray: uint8, same shape.
    """
    if img.dtype == np.uint8:
        return img
    bits = source_bit_depth(img) if bit_depth is None else bit_depth
    if not _UINT8_BITS <= bits <= np.iinfo(img.dtype).bits:
        raise ValueError(f'bit_depth must be in [8, '
                         f'{np.iinfo(img.dtype).bits}] for a {img.dtype} '
                         f'image, got {bits!r}.')
    scale = np.iinfo(np.uint8).max / float((1 << bits) - 1)
    scaled = np.rint(img.astype(np.float32) * scale)
    return np.clip(scaled, 0, np.iinfo(np.uint8).max).astype(np.uint8)


def decode_image(data: bytes,
                 color_type: str = 'color',
                 channel_order: str = 'bgr') -> Optional[np.ndarray]:
    """Decode an image as stored: EXIF orientation ignored, high bit
    depths scaled by :func:`to_uint8`.

    Args:
        data (bytes): The file content.
        color_type (str): One of :data:`COLOR_TYPES`.
        channel_order (str): ``'bgr'`` (OpenCV's) or ``'rgb'``.

    Returns:
        np.ndarray | None: uint8 (H, W, 3) or (H, W); None if OpenCV cannot
        decode ``data``.
    """
    if color_type not in _FLAGS:
        raise ValueError(f'color_type must be one of {COLOR_TYPES}, got '
                         f'{color_type!r}.')
    try:
        img = mmcv.imfrombytes(data, flag=_FLAGS[color_type], backend='cv2')
    except Exception:  # e.g. cv2.error on an empty buffer
        return None
    if img is None:
        return None
    if img.dtype not in (np.uint8, np.uint16):
        # float / 32-bit TIFF: OpenCV's own conversion, still unrotated
        flag = _FLAGS[color_type] & ~cv2.IMREAD_ANYDEPTH
        img = mmcv.imfrombytes(data, flag=flag, backend='cv2')
        if img is None:
            return None
    img = to_uint8(img)
    if channel_order == 'rgb' and img.ndim == 3:
        img = np.ascontiguousarray(img[..., ::-1])
    return img


def raw_bit_range(data: bytes) -> Optional[tuple]:
    """``(dtype bits, max value)`` of an image decoded unchanged, or None.

    For :mod:`~hermes_mm.datasets.dataset_check`: tells a 16-bit file
    holding 12-bit data (``(16, 4095)``) from a full-range one.
    """
    try:
        img = mmcv.imfrombytes(
            data, flag=cv2.IMREAD_UNCHANGED, backend='cv2')
    except Exception:
        return None
    if img is None or not np.issubdtype(img.dtype, np.unsignedinteger):
        return None
    return np.iinfo(img.dtype).bits, int(img.max()) if img.size else 0


__all__ = [
    'AXES_SWAPPED', 'COLOR_TYPES', 'EXIF_ORIENTATIONS',
    'EXIF_ORIENTATION_TAG', 'decode_image', 'describe_orientation',
    'exif_orientation', 'raw_bit_range', 'source_bit_depth', 'to_uint8'
]
