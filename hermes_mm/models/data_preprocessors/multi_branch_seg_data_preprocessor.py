"""Pre-process a semi-supervised batch branch by branch.

The design follows MMDetection's ``MultiBranchDataPreprocessor``
(``mmdet/models/data_preprocessors/data_preprocessor.py``): one wrapped
pre-processor, applied to each branch of a batch produced by the
``MultiBranch`` transform and ``pseudo_collate``. Unlike MMDetection's, a
branch's ``None`` entries (samples that do not feed it) are dropped and
empty branches are omitted, and the decision multi-branch vs plain is taken
from the batch itself, so validation/test batches pass straight through.
"""
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import PixelData

from hermes_mm.registry import MODELS

#: Name under which the wrapped pre-processor is stored.
_WRAPPED = 'data_preprocessor'


@MODELS.register_module()
class MultiBranchSegDataPreProcessor(BaseDataPreprocessor):
    """Normalise, pad and stack each branch of a multi-branch batch.

    Input (from ``MultiBranch`` + ``pseudo_collate``)::

        {'inputs': {branch: [Tensor(3, H, W) | None, ...]},
         'data_samples': {branch: [SegDataSample | None, ...]}}

    Output::

        {'inputs': {branch: Tensor(B_b, 3, H, W)},
         'data_samples': {branch: list[SegDataSample]}}   # len B_b

    where branch ``b`` keeps only the samples that feed it (``B_b`` of
    them) and a branch with no samples is absent. Each branch goes through
    the same wrapped :class:`mmseg.models.SegDataPreProcessor`, so weak and
    strong views are padded identically and their pixels still correspond.
    A plain batch (``data['inputs']`` a list, as in validation and test) is
    handed to the wrapped pre-processor unchanged.

    When training, ``SegDataPreProcessor`` pads ``gt_sem_seg`` only; the
    fields named in ``extra_seg_fields`` (the hidden masks of unlabelled
    images, used for pseudo-label precision) are padded the same way with
    ``seg_pad_val``, so they line up with the padded predictions; and
    samples without ``gt_sem_seg`` get ``pad_shape`` = the padded input
    size (``stack_batch`` leaves it None).

    Device moves (``to``/``cuda``/``cpu``, ``_device``) act on the wrapped
    pre-processor: it holds the only device state. Attributes the wrapper
    does not have (``mean``, ``std``, ``pad_val``, ``seg_pad_val``,
    ``size``, ...) are read from the wrapped pre-processor, so code written
    for a ``SegDataPreProcessor`` keeps working.

    Args:
        data_preprocessor (dict): Config of the wrapped pre-processor,
            e.g. ``dict(type='SegDataPreProcessor', mean=..., std=...,
            bgr_to_rgb=True, size=crop_size, pad_val=0, seg_pad_val=255)``;
            ``type`` defaults to ``'SegDataPreProcessor'``.
        extra_seg_fields (Sequence[str]): ``PixelData`` fields of the data
            samples padded like ``gt_sem_seg`` when training. Defaults to
            ``('hidden_sem_seg', )``.
    """

    def __init__(self,
                 data_preprocessor: dict,
                 extra_seg_fields: Sequence[str] = ('hidden_sem_seg', )
                 ) -> None:
        super().__init__()
        cfg = dict(data_preprocessor)
        cfg.setdefault('type', 'SegDataPreProcessor')
        self.data_preprocessor: BaseDataPreprocessor = MODELS.build(cfg)
        if isinstance(extra_seg_fields, str):
            extra_seg_fields = (extra_seg_fields, )
        self.extra_seg_fields = tuple(extra_seg_fields)

    # ------------------------------------------------------------ device
    @property
    def _device(self) -> torch.device:
        """The wrapped pre-processor's device (the single source of truth).

        ``BaseDataPreprocessor.to/cuda/cpu`` and MMEngine/MMPretrain code
        that assigns ``_device`` directly all go through this property.
        """
        wrapped = self.__dict__.get('_modules', {}).get(_WRAPPED)
        if wrapped is None:  # during BaseDataPreprocessor.__init__
            return self.__dict__.get('_own_device', torch.device('cpu'))
        return wrapped._device

    @_device.setter
    def _device(self, device: torch.device) -> None:
        wrapped = self.__dict__.get('_modules', {}).get(_WRAPPED)
        if wrapped is None:
            self.__dict__['_own_device'] = device
        else:
            wrapped._device = device

    def __getattr__(self, name: str) -> Any:
        """Fall back to the wrapped pre-processor's attributes."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get('_modules', {}).get(_WRAPPED)
            if wrapped is None:
                raise
            return getattr(wrapped, name)

    # ----------------------------------------------------------- forward
    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        """Pre-process a multi-branch batch per branch, or a plain batch.

        Args:
            data (dict): A batch from ``pseudo_collate``.
            training (bool): Passed to the wrapped pre-processor (pads and
                stacks ground truth when True).

        Returns:
            dict: ``{'inputs': ..., 'data_samples': ...}``, per branch for a
            multi-branch batch.
        """
        if not isinstance(data.get('inputs'), dict):
            return self.data_preprocessor(data, training)

        inputs: Dict[str, torch.Tensor] = {}
        data_samples: Dict[str, Optional[list]] = {}
        branch_samples = data.get('data_samples') or {}
        for branch, branch_inputs in data['inputs'].items():
            samples = branch_samples.get(branch)
            if samples is None:
                samples = [None] * len(branch_inputs)
            if len(samples) != len(branch_inputs):
                raise ValueError(
                    f'Branch {branch!r} has {len(branch_inputs)} inputs but '
                    f'{len(samples)} data samples.')
            keep = [i for i, x in enumerate(branch_inputs) if x is not None]
            if not keep:
                continue
            kept_samples = [samples[i] for i in keep]
            if any(s is None for s in kept_samples):
                kept_samples = None
            out = self.data_preprocessor(
                dict(inputs=[branch_inputs[i] for i in keep],
                     data_samples=kept_samples), training)
            if training and out['data_samples'] is not None:
                self._pad_extra_seg_fields(out['inputs'],
                                           out['data_samples'])
            inputs[branch] = out['inputs']
            data_samples[branch] = out['data_samples']
        return dict(inputs=inputs, data_samples=data_samples)

    def _pad_extra_seg_fields(self, inputs: torch.Tensor,
                              data_samples: list) -> None:
        """Pad ``extra_seg_fields`` as ``stack_batch`` padded ``gt_sem_seg``.

        Uses the ``padding_size`` (left, right, top, bottom) that MMSeg's
        ``stack_batch`` records in each sample's metainfo. Samples without
        ``gt_sem_seg`` (unlabelled views) get ``pad_shape`` = the padded
        input size instead of ``stack_batch``'s ``None``.
        """
        seg_pad_val = self.data_preprocessor.seg_pad_val
        for sample in data_samples:
            padding_size = sample.metainfo.get('padding_size')
            if padding_size is None:
                continue
            for field in self.extra_seg_fields:
                if field not in sample:
                    continue
                pixel_data = getattr(sample, field)
                padded = F.pad(pixel_data.data, padding_size,
                               value=seg_pad_val)
                setattr(sample, field,
                        PixelData(data=padded, **pixel_data.metainfo))
            if sample.metainfo.get('pad_shape') is None:
                sample.set_metainfo(dict(pad_shape=tuple(inputs.shape[-2:])))
