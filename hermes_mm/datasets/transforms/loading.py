"""Load, merge and binarise lesion masks for the multi-task pipelines."""
import warnings
from typing import Optional, Tuple

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio

from hermes_mm.registry import TRANSFORMS
from hermes_mm.utils.image_io import (AXES_SWAPPED, describe_orientation,
                                      exif_orientation)

#: Value range masks are thresholded in (8-bit); wider integer masks are
#: compared on the same relative scale.
_UINT8_MAX = np.iinfo(np.uint8).max

#: How many offending values a message lists.
_MAX_VALUES_LISTED = 5


def nonbinary_values(mask: np.ndarray, allow_index: bool = False
                     ) -> np.ndarray:
    """The distinct values of an integer mask other than 0 and full scale.

    A binary mask holds only 0 (background) and the dtype's maximum (255
    for 8-bit, BUSI's lesion value). ``allow_index`` also accepts 1 (0/1
    index masks, read with ``binarize_threshold=0``). Boolean masks are
    always binary.

    Args:
        mask (np.ndarray): An unsigned-integer or bool mask, any shape.
        allow_index (bool): Treat 1 as a binary value too.

    Returns:
        np.ndarray: The sorted offending values (empty if binary).
    """
    if mask.dtype == bool:
        return np.zeros(0, dtype=np.uint8)
    full = np.iinfo(mask.dtype).max
    odd = (mask != 0) & (mask != full)
    if allow_index:
        odd &= mask != 1
    if not odd.any():
        return np.zeros(0, dtype=mask.dtype)
    return np.unique(mask[odd])


def decode_mask(data: bytes, path: str,
                imdecode_backend: str = 'cv2') -> np.ndarray:
    """Decode a mask file into one (H, W) channel, values unchanged.

    One-channel masks are used as they are; 2-channel (grey + alpha) masks
    use the grey channel; 3-channel masks take the maximum over channels
    (a coloured lesion in any channel counts); 4-channel (RGBA) masks do
    the same over the colour channels and ignore alpha.

    Args:
        data (bytes): The file content.
        path (str): The file, for messages.
        imdecode_backend (str): ``mmcv.imfrombytes`` backend.

    Returns:
        np.ndarray: (H, W), an unsigned integer or bool dtype.

    Raises:
        ValueError: Not decodable, or a channel count / pixel type a mask
            cannot have; the message names ``path``.
    """
    try:
        mask = mmcv.imfrombytes(
            data, flag='unchanged', backend=imdecode_backend)
    except Exception:  # e.g. cv2.error on an empty file
        mask = None
    if mask is None or mask.ndim not in (2, 3):
        raise ValueError(f'Mask {path!r} could not be decoded as an '
                         f'image.')
    if mask.ndim == 3:
        channels = mask.shape[2]
        if channels in (1, 2):  # grey (+ alpha)
            mask = mask[..., 0]
        elif channels in (3, 4):  # colour (+ alpha, ignored)
            mask = mask[..., :3].max(axis=2)
        else:
            raise ValueError(f'Mask {path!r} has {channels} channels; '
                             f'expected 1, 2, 3 or 4.')
    if mask.dtype != bool and not np.issubdtype(mask.dtype,
                                                np.unsignedinteger):
        raise ValueError(f'Mask {path!r} has pixel type {mask.dtype}; '
                         f'expected an unsigned integer or bool image.')
    return mask


def orientation_hint(img_data: Optional[bytes], mask_shape: Tuple[int, int],
                     img_shape: Tuple[int, int]) -> str:
    """What a mask/image size mismatch has to do with the image's EXIF
    orientation ('' when the image has none).

    Images and masks are both read as stored (the EXIF orientation is
    ignored, see :mod:`hermes_mm.utils.image_io`); a mask matching the
    *displayed* (rotated) image was drawn on the rotated view.
    """
    orientation = exif_orientation(img_data)
    if orientation == 1:
        return ''
    hint = (f' The image carries {describe_orientation(orientation)}, '
            f'which hermes_mm ignores for images and masks alike (pixels '
            f'are read as stored).')
    if orientation in AXES_SWAPPED and tuple(mask_shape) == tuple(
            img_shape[::-1]):
        hint += (' The mask matches the rotated view, so it was drawn on '
                 'the displayed image: store the image upright (e.g. PIL '
                 'ImageOps.exif_transpose, then save without EXIF) or '
                 'rotate the mask to the stored pixels.')
    return hint


def describe_values(values: np.ndarray) -> str:
    """``'3 value(s): 1, 128, 254'`` (at most five values listed)."""
    shown = ', '.join(str(v) for v in values[:_MAX_VALUES_LISTED].tolist())
    more = ', ...' if len(values) > _MAX_VALUES_LISTED else ''
    return f'{len(values)} value(s): {shown}{more}'


@TRANSFORMS.register_module()
class LoadMultiTaskAnnotations(BaseTransform):
    """Load a binary lesion mask (OR of several files) and the image label.

    Runs after ``LoadImageAsStored`` (or ``LoadImageFromFile``): the mask
    must match the original image size (``results['ori_shape']``, else
    ``img_shape``), so in test pipelines it may follow ``Resize`` and
    metrics stay in original-image pixels, as with MMSeg's
    ``LoadAnnotations``.

    Mask decoding (:func:`decode_mask`): each file of ``seg_map_paths`` is
    read unchanged. One-channel masks are used as they are; 3-channel masks
    take the maximum over channels (a coloured lesion in any channel
    counts); 4-channel (RGBA) masks do the same over the colour channels
    and ignore alpha; 2-channel (grey + alpha) masks use the grey channel.
    Pixel
    values ``> binarize_threshold`` are lesion: BUSI masks are 0/255, but
    resized or JPEG-compressed masks have intermediate values at the
    border, and ``> 127`` splits them at mid-range (such a mask is read,
    with a ``UserWarning`` naming the file and the values other than
    0/255, once per file). Wider unsigned integer
    masks (16-bit PNG/TIFF) are compared on the same relative scale, i.e.
    against ``binarize_threshold * (dtype max / 255)`` (16-bit: > 32639).
    Boolean masks are used as they are. Masks are OR-merged.

    Keys (``docs/architecture.md``, "Pipeline keys"):

    - Required: ``seg_map_paths`` (list[str]), ``has_mask`` (bool),
      ``ori_shape`` or ``img_shape``.
    - Optional: ``gt_label`` (int), ``seg_fields`` (list).
    - Added (``hidden=False``): ``gt_seg_map`` (uint8 H x W, values
      {0, 1}), appended to ``seg_fields`` so geometric transforms follow
      it. ``gt_label`` is kept.
    - Added (``hidden=True``, unlabelled pipelines): the same map as
      ``hidden_seg_map`` (also in ``seg_fields``) and the label moved from
      ``gt_label`` to ``hidden_label``, so nothing can train on them.

    ``has_mask=True`` with an empty ``seg_map_paths`` gives an
    all-background map (BUSI "normal" images). ``has_mask=False`` writes
    no map unless ``fill_missing_with`` is set.

    Args:
        binarize_threshold (int): Pixel values above it (on the 8-bit
            scale) are lesion. Defaults to 127. Set 0 for 0/1 index masks.
        hidden (bool): Write ``hidden_seg_map``/``hidden_label`` instead of
            ``gt_seg_map``/``gt_label``. Defaults to False.
        fill_missing_with (int, optional): When ``has_mask`` is False,
            write a map of this value (e.g. an ignore index such as 255)
            instead of nothing. Defaults to None (write nothing).
        imdecode_backend (str): ``mmcv.imfrombytes`` backend. Defaults to
            ``'cv2'`` (keeps 16-bit depth and all channels).
        backend_args (dict, optional): MMEngine file backend arguments.
            Defaults to None.
    """

    def __init__(self,
                 binarize_threshold: int = 127,
                 hidden: bool = False,
                 fill_missing_with: Optional[int] = None,
                 imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None) -> None:
        if not 0 <= binarize_threshold < _UINT8_MAX:
            raise ValueError(f'binarize_threshold must be in [0, '
                             f'{_UINT8_MAX}), got {binarize_threshold!r}.')
        if fill_missing_with is not None and not (
                0 <= fill_missing_with <= _UINT8_MAX):
            raise ValueError(f'fill_missing_with must be None or in [0, '
                             f'{_UINT8_MAX}], got {fill_missing_with!r}.')
        self.binarize_threshold = binarize_threshold
        self.hidden = hidden
        self.fill_missing_with = fill_missing_with
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args.copy() if backend_args else None

    def _read_lesion(self, path: str) -> np.ndarray:
        """Read one mask file as a boolean (H, W) lesion map."""
        mask = decode_mask(
            fileio.get(path, backend_args=self.backend_args), path,
            self.imdecode_backend)
        if mask.dtype == bool:
            return mask
        scale = np.iinfo(mask.dtype).max / _UINT8_MAX
        lesion = mask > self.binarize_threshold * scale
        if mask.any() and not lesion.any():
            warnings.warn(
                f'Mask {path!r} is non-zero but no value exceeds '
                f'binarize_threshold={self.binarize_threshold} (max '
                f'{mask.max()}); if it is a 0/1 index mask, set '
                f'binarize_threshold=0.')
            return lesion
        odd = nonbinary_values(mask, allow_index=self.binarize_threshold == 0)
        if len(odd):
            # Once per file and process (the message names the file).
            warnings.warn(
                f'Mask {path!r} is not binary: besides 0 and '
                f'{np.iinfo(mask.dtype).max} it holds {describe_values(odd)}.'
                f' Pixels > {self.binarize_threshold} (8-bit scale) are '
                f'taken as lesion, the rest as background. '
                f'tools/check_dataset.py lists every such mask.')
        return lesion

    @staticmethod
    def _image_shape(results: dict) -> Tuple[int, int]:
        """Original image (H, W) the masks must match."""
        shape = results.get('ori_shape', results.get('img_shape'))
        if shape is None:
            raise KeyError(
                f'LoadMultiTaskAnnotations needs results["ori_shape"] or '
                f'["img_shape"] ({results.get("img_path")!r}): put it after '
                f'LoadImageAsStored (or LoadImageFromFile).')
        return tuple(shape[:2])

    def _orientation_hint(self, results: dict, mask_shape, shape) -> str:
        """:func:`orientation_hint` of ``results['img_path']`` ('' if it
        cannot be read)."""
        try:
            data = fileio.get(results['img_path'],
                              backend_args=self.backend_args)
        except Exception:  # the size error must not fail on a second read
            return ''
        return orientation_hint(data, mask_shape, shape)

    def _merge(self, results: dict) -> np.ndarray:
        """OR-merge ``seg_map_paths`` into a uint8 {0, 1} (H, W) map."""
        shape = self._image_shape(results)
        merged = np.zeros(shape, dtype=bool)
        for path in results['seg_map_paths']:
            lesion = self._read_lesion(path)
            if lesion.shape != shape:
                raise ValueError(
                    f'Mask {path!r} is {lesion.shape[0]}x{lesion.shape[1]} '
                    f'(HxW) but image {results.get("img_path")!r} is '
                    f'{shape[0]}x{shape[1]}; masks must match the original '
                    f'image size.' + self._orientation_hint(
                        results, lesion.shape, shape))
            merged |= lesion
        return merged.astype(np.uint8)

    def transform(self, results: dict) -> dict:
        """Add the lesion map and move the label if ``hidden``.

        Args:
            results (dict): Pipeline results with the required keys above.

        Returns:
            dict: ``results`` with the added keys.
        """
        for key in ('seg_map_paths', 'has_mask'):
            if key not in results:
                raise KeyError(
                    f'LoadMultiTaskAnnotations needs results[{key!r}] '
                    f'({results.get("img_path")!r}); use a dataset producing '
                    f'the data info of docs/architecture.md (BUSIDataset, '
                    f'MultiTaskAnnotationDataset). Predicting? MMSeg\'s '
                    f'MMSegInferencer keeps this transform and has no '
                    f'class output: use hermes_mm.apis.HermesInferencer or '
                    f'tools/infer.py CONFIG CHECKPOINT IMAGES --out-dir D.')
        seg_key = 'hidden_seg_map' if self.hidden else 'gt_seg_map'
        seg_map = None
        if results['has_mask']:
            seg_map = self._merge(results)
        elif self.fill_missing_with is not None:
            seg_map = np.full(
                self._image_shape(results),
                self.fill_missing_with,
                dtype=np.uint8)
        if seg_map is not None:
            results[seg_key] = seg_map
            seg_fields = results.setdefault('seg_fields', [])
            if seg_key not in seg_fields:
                seg_fields.append(seg_key)
        if self.hidden:
            results['hidden_label'] = results.pop('gt_label', -1)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'binarize_threshold={self.binarize_threshold}, '
                f'hidden={self.hidden}, '
                f'fill_missing_with={self.fill_missing_with}, '
                f"imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')
