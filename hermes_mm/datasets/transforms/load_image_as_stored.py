"""``LoadImageAsStored``: MMCV's ``LoadImageFromFile`` with images read as
stored (no EXIF rotation), 12-bit data scaled by its bit depth, and a clear
error for undecodable files.

MMCV 2.x's ``LoadImageFromFile`` reports an undecodable file (truncated
PNG, an HTML error page saved as ``.png``, an empty file) with
``assert img is not None, f'failed to load image: {filename}'``
(https://github.com/open-mmlab/mmpretrain/issues/1427): an
``AssertionError`` that says nothing about what was expected, and that
``python -O`` strips, turning it into a crash further down the pipeline.
:class:`LoadImageAsStored` raises a ``ValueError`` naming the file, its
size and the formats expected, and pointing at ``tools/check_dataset.py``;
with ``ignore_empty=True`` the file is skipped (``None``), as that option
promises but MMCV's assertion does not do.

It also decodes with :func:`hermes_mm.utils.image_io.decode_image` for the
cv2 backend and the colour / grayscale colour types: the EXIF orientation
is ignored (masks, decoded unchanged, carry none, so OpenCV's rotation
turned images against their masks), and 16-bit files are scaled by the bit
depth their data uses (12-bit data 0-4095 -> 0-255; OpenCV divides by 256,
giving 0-15). Every other behaviour is MMCV's.

The hermes_mm pipelines name it (``dict(type='LoadImageAsStored')``); MMCV's
``LoadImageFromFile`` itself is left as it is.
"""
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from hermes_mm.registry import TRANSFORMS
from hermes_mm.utils.image_io import COLOR_TYPES, decode_image


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


@TRANSFORMS.register_module()
class LoadImageAsStored(LoadImageFromFile):
    """Load an image as stored, with a clear error if it can't be decoded.

    Same arguments and output keys (``img``, ``img_shape``, ``ori_shape``)
    as :class:`mmcv.transforms.LoadImageFromFile`. With the ``cv2``
    backend and a colour / grayscale ``color_type`` the pixels are decoded
    by :func:`~hermes_mm.utils.image_io.decode_image` (EXIF orientation
    ignored, 16-bit data scaled by its bit depth); other settings decode as
    MMCV does. An undecodable file raises :func:`undecodable_image_error`
    (or returns None with ``ignore_empty=True``).
    """

    def _decodes_as_stored(self) -> bool:
        """Whether :meth:`_load_as_stored` handles these settings."""
        return (self.imdecode_backend == 'cv2'
                and self.color_type in COLOR_TYPES
                and self.file_client_args is None)

    def _load_as_stored(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except Exception:
            if self.ignore_empty:
                return None
            raise
        img = decode_image(img_bytes, self.color_type)
        if img is None:
            if self.ignore_empty:
                return None
            raise undecodable_image_error(filename, self.imdecode_backend,
                                          self.backend_args)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _decodes(self, results: dict) -> bool:
        """Whether MMCV's decoder decodes the image at all."""
        try:
            img_bytes = fileio.get(
                results['img_path'], backend_args=self.backend_args)
        except Exception:
            return True  # unreadable, not undecodable: keep the first error
        try:
            img = mmcv.imfrombytes(
                img_bytes, flag=self.color_type,
                backend=self.imdecode_backend)
        except Exception:
            return False
        return img is not None

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']`` into ``results['img']``."""
        if self._decodes_as_stored():
            return self._load_as_stored(results)
        try:
            return super().transform(results)
        except Exception as err:
            # AssertionError: MMCV's check; AttributeError: the same under
            # ``python -O`` (``None.shape``); cv2.error: an empty file.
            # Decode again, on this error path only, to tell them from
            # unrelated errors (a missing file stays a FileNotFoundError).
            if (self.file_client_args is not None
                    or isinstance(err, OSError) or self._decodes(results)):
                raise
            if self.ignore_empty:  # MMCV asserts even then; skip the file
                return None
            raise undecodable_image_error(results['img_path'],
                                          self.imdecode_backend,
                                          self.backend_args) from err


__all__ = ['LoadImageAsStored', 'undecodable_image_error']
