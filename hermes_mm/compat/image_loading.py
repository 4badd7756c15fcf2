"""``LoadImageFromFile``: a clear error for undecodable files; images read
as stored (no EXIF rotation) with 12-bit data scaled by its bit depth.

MMCV 2.x's ``LoadImageFromFile`` reports an undecodable file (truncated
PNG, an HTML error page saved as ``.png``, an empty file) with
``assert img is not None, f'failed to load image: {filename}'``
(https://github.com/open-mmlab/mmpretrain/issues/1427): an
``AssertionError`` that says nothing about what was expected, and that
``python -O`` strips, turning it into a crash further down the pipeline.

:func:`install` wraps its ``transform`` so that case raises a
``ValueError`` naming the file, its size and the formats expected, and
pointing at ``tools/check_dataset.py``; with ``ignore_empty=True`` the
file is skipped (``None``), as that option promises but MMCV's assertion
does not do.

It also decodes with :func:`hermes_mm.utils.image_io.decode_image` for
the cv2 backend and the colour / grayscale colour types: the EXIF
orientation is ignored (masks, decoded unchanged, carry none, so OpenCV's
rotation turned images against their masks), and 16-bit files are scaled
by the bit depth their data uses (12-bit data 0-4095 -> 0-255; OpenCV
divides by 256, giving 0-15). Every other behaviour is MMCV's.
"""
import functools
import os.path as osp

import mmcv
import numpy as np
from mmengine import fileio

from hermes_mm.utils.image_io import COLOR_TYPES, decode_image

_PATCH_FLAG = '_hermes_decode_error'


def undecodable_image_error(filename: str, imdecode_backend: str,
                            backend_args=None) -> ValueError:
    """The error for an image file that decodes to nothing."""
    try:
        size = f'{len(fileio.get(filename, backend_args=backend_args))} bytes'
    except Exception:  # the message must not fail on a second read
        size = 'unknown size'
    suffix = osp.splitext(filename)[1] or '(none)'
    return ValueError(
        f'Image {filename!r} ({size}, suffix {suffix}) could not be decoded '
        f'by the {imdecode_backend!r} backend; expected a complete PNG, '
        f'JPEG, BMP or TIFF image. The file may be truncated, empty or not '
        f'an image; run tools/check_dataset.py on the data root to list '
        f'every such file.')


def _decodes(loader, results: dict) -> bool:
    """Whether ``loader`` (a ``LoadImageFromFile``) decodes the image."""
    try:
        img_bytes = fileio.get(
            results['img_path'], backend_args=loader.backend_args)
    except Exception:
        return True  # unreadable, not undecodable: keep the first error
    try:
        img = mmcv.imfrombytes(
            img_bytes, flag=loader.color_type,
            backend=loader.imdecode_backend)
    except Exception:
        return False
    return img is not None


def _decodes_as_stored(loader) -> bool:
    """Whether :func:`load_as_stored` handles this loader's settings."""
    return (loader.imdecode_backend == 'cv2'
            and loader.color_type in COLOR_TYPES
            and loader.file_client_args is None)


def load_as_stored(loader, results: dict):
    """``LoadImageFromFile.transform`` with
    :func:`~hermes_mm.utils.image_io.decode_image` (no EXIF rotation,
    bit-depth scaling); same keys, same ``ignore_empty`` handling."""
    filename = results['img_path']
    try:
        img_bytes = fileio.get(filename, backend_args=loader.backend_args)
    except Exception:
        if loader.ignore_empty:
            return None
        raise
    img = decode_image(img_bytes, loader.color_type)
    if img is None:
        if loader.ignore_empty:
            return None
        raise undecodable_image_error(filename, loader.imdecode_backend,
                                      loader.backend_args)
    if loader.to_float32:
        img = img.astype(np.float32)
    results['img'] = img
    results['img_shape'] = img.shape[:2]
    results['ori_shape'] = img.shape[:2]
    return results


def checked_transform(original):
    """Wrap ``LoadImageFromFile.transform``: an undecodable file raises
    :func:`undecodable_image_error`."""

    @functools.wraps(original)
    def transform(self, results):
        if _decodes_as_stored(self):
            return load_as_stored(self, results)
        try:
            return original(self, results)
        except Exception as err:
            # AssertionError: MMCV's check; AttributeError: the same under
            # ``python -O`` (``None.shape``); cv2.error: an empty file.
            # Decode again, on this error path only, to tell them from
            # unrelated errors (a missing file stays a FileNotFoundError).
            if (self.file_client_args is not None
                    or isinstance(err, OSError) or _decodes(self, results)):
                raise
            if self.ignore_empty:  # MMCV asserts even then; skip the file
                return None
            raise undecodable_image_error(results['img_path'],
                                          self.imdecode_backend,
                                          self.backend_args) from err

    setattr(transform, _PATCH_FLAG, True)
    return transform


def install() -> bool:
    """Patch MMCV's ``LoadImageFromFile`` (idempotent).

    Returns:
        bool: True (the patch is in place).
    """
    from mmcv.transforms import LoadImageFromFile
    if not getattr(LoadImageFromFile.transform, _PATCH_FLAG, False):
        LoadImageFromFile.transform = checked_transform(
            LoadImageFromFile.transform)
    return True


__all__ = [
    'checked_transform', 'install', 'load_as_stored',
    'undecodable_image_error'
]
