"""Pack a multi-task (lesion mask + image class) sample for the model."""
from typing import Sequence

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from hermes_mm.registry import TRANSFORMS

#: The label packed when a sample has none.
UNKNOWN_LABEL = -1


def _label_tensor(label: object) -> torch.Tensor:
    """An int label (or 0-d/1-element array) as ``LongTensor(1,)``."""
    return torch.as_tensor(np.asarray(label), dtype=torch.long).reshape(1)


def _seg_pixel_data(seg_map: np.ndarray) -> PixelData:
    """A (H, W) map as ``PixelData(data=LongTensor(1, H, W))``."""
    return PixelData(
        data=torch.from_numpy(
            np.ascontiguousarray(seg_map[None].astype(np.int64))))


@TRANSFORMS.register_module()
class PackMultiTaskInputs(PackSegInputs):
    """MMSeg's ``PackSegInputs`` plus the image label and hidden targets.

    Produces ``{'inputs': Tensor(3, H, W), 'data_samples': SegDataSample}``
    with, besides MMSeg's fields (``gt_sem_seg`` from ``gt_seg_map``):

    - ``gt_label``: ``LongTensor(1,)`` from ``results['gt_label']``,
      ``-1`` when absent (unlabelled images).
    - ``hidden_sem_seg`` (``PixelData``, ``LongTensor(1, H, W)``) and
      ``hidden_label`` (``LongTensor(1,)``): only when
      ``LoadMultiTaskAnnotations(hidden=True)`` wrote them; diagnostics
      (pseudo-label precision), never training targets.

    Args:
        meta_keys (Sequence[str]): Keys copied into the sample's metainfo.
            Defaults to MMSeg's keys plus ``img_rel``.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = (
                     'img_path', 'img_rel', 'seg_map_path', 'ori_shape',
                     'img_shape', 'pad_shape', 'scale_factor', 'flip',
                     'flip_direction', 'reduce_zero_label')) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: dict) -> dict:
        """Pack ``results`` (see the class docstring).

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        packed = super().transform(results)
        data_sample = packed['data_samples']
        extra = dict(
            gt_label=_label_tensor(results.get('gt_label', UNKNOWN_LABEL)))
        if results.get('hidden_seg_map') is not None:
            extra['hidden_sem_seg'] = _seg_pixel_data(
                results['hidden_seg_map'])
        if 'hidden_label' in results:
            extra['hidden_label'] = _label_tensor(results['hidden_label'])
        data_sample.set_data(extra)
        return packed
