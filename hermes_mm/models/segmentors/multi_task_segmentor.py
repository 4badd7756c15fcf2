"""One network that segments the lesion and classifies the image.

The supervised multi-task model of hermes_mm, and the student/teacher inside
:class:`~hermes_mm.models.segmentors.HermesSegmentor`. It is an MMSeg
:class:`~mmseg.models.segmentors.EncoderDecoder` with a *task neck* between
the (optional) neck and the heads, and a classification head beside the
decode head, so it runs unchanged in MMSeg's test loop, with any MMSeg or
MMPretrain backbone, any MMSeg decode head and any MMPretrain classification
head.
"""
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.utils import (ConfigType, OptConfigType, OptMultiConfig,
                         OptSampleList, SampleList, add_prefix)
from torch import Tensor

from hermes_mm.registry import MODELS
from ..necks.task_features import TaskFeatures
from ..utils.channel_check import check_channels
from ..utils.finite_losses import FiniteLossesMixin
from ..utils.lesion_decision import check_lesion_classes, mask_decides_lesion
from ..utils.small_components import check_min_area, remove_small_components


def rename_loss_keys(losses: Dict[str, Tensor],
                     mapping: Dict[str, str]) -> Dict[str, Tensor]:
    """Rename the keys of a loss dict (``{'loss': x}`` -> ``{'loss_cls': x}``).

    MMPretrain heads return their loss as ``'loss'``; renaming keeps the
    flat, prefixed key style of MMSeg (``cls.loss_cls``).
    """
    return {mapping.get(key, key): value for key, value in losses.items()}


@dataclass
class MultiTaskOutputs:
    """Raw training-time outputs of one forward pass.

    Attributes:
        task_feats (TaskFeatures): Task-neck features.
        seg_logits (Tensor): Decode-head logits (B, C, h, w) at the head's
            resolution.
        cls_logits (Tensor): Classification logits (B, K).
    """
    task_feats: TaskFeatures
    seg_logits: Tensor
    cls_logits: Tensor

    def slice(self, start: int, stop: int) -> 'MultiTaskOutputs':
        """The outputs of images ``start:stop`` of the batch."""
        return MultiTaskOutputs(
            task_feats=self.task_feats.slice(start, stop),
            seg_logits=self.seg_logits[start:stop],
            cls_logits=self.cls_logits[start:stop])

    def with_image_level(self, rows: Tensor,
                         other: 'MultiTaskOutputs') -> 'MultiTaskOutputs':
        """These outputs with the image-level ones (``cls_logits``,
        ``task_feats.cls_vec``) of the images where ``rows`` ((B,) bool) is
        True replaced by ``other``'s, one ``other`` image per True row in
        order; the dense outputs are kept."""
        index = (rows.nonzero(as_tuple=True)[0], )
        if len(index[0]) != other.cls_logits.shape[0]:
            raise ValueError(f'{len(index[0])} rows to replace but '
                             f'{other.cls_logits.shape[0]} replacement images')
        return MultiTaskOutputs(
            task_feats=replace(
                self.task_feats,
                cls_vec=self.task_feats.cls_vec.index_put(
                    index, other.task_feats.cls_vec)),
            seg_logits=self.seg_logits,
            cls_logits=self.cls_logits.index_put(index, other.cls_logits))

    @staticmethod
    def cat(first: 'MultiTaskOutputs',
            second: 'MultiTaskOutputs') -> 'MultiTaskOutputs':
        """``first``'s images followed by ``second``'s (inverse of
        :meth:`slice`)."""
        return MultiTaskOutputs(
            task_feats=TaskFeatures.cat(first.task_feats, second.task_feats),
            seg_logits=torch.cat([first.seg_logits, second.seg_logits]),
            cls_logits=torch.cat([first.cls_logits, second.cls_logits]))


@MODELS.register_module()
class MultiTaskSegmentor(FiniteLossesMixin, EncoderDecoder):
    """Encoder-decoder segmentor with an image-classification branch.

    Data flow::

        inputs -> backbone -> [neck] -> task_neck -> TaskFeatures
            seg_feats -> decode_head (+ auxiliary_head) -> seg logits
            (cls_vec,) -> cls_head                    -> class logits

    ``task_neck`` is :class:`~hermes_mm.models.necks.TaskSplitNeck` (no
    interaction) or :class:`~hermes_mm.models.necks.ITASNeck` (inter-task
    attention & saliency). Losses are returned flat and prefixed: ``seg.*``
    (decode head), ``aux.*``, ``cls.*`` (classification head, its ``loss``
    renamed ``loss_cls``) and ``sal.*`` (task-neck supervision).

    Args:
        backbone (dict): Any registered backbone, e.g. ``ResNetV1c`` or
            ``mmpretrain.ResNet``.
        decode_head (dict): Any MMSeg decode head (``num_classes=2``:
            background / lesion).
        cls_head (dict): A classification head taking ``(cls_vec,)``, e.g.
            ``mmpretrain.LinearClsHead`` (its ``in_channels`` is the channel
            count of the task neck's classification level). The
            ``in_channels`` of ``task_neck``, ``decode_head``,
            ``auxiliary_head`` and ``cls_head`` are checked against one
            dummy forward of the backbone at build time (one error lists
            every wrong key; unset ones are inferred, see
            :func:`~hermes_mm.models.utils.channel_check.check_channels`).
        task_neck (dict): The task neck. Defaults to ``TaskSplitNeck``.
        neck (dict, optional): A plain MMSeg neck applied before the task
            neck (e.g. ``FPN``).
        auxiliary_head (dict | list, optional): MMSeg auxiliary head(s).
        cls_loss_name (str): Name given to the classification head's loss.
        train_cfg (dict, optional): MMSeg train config.
        test_cfg (dict, optional): MMSeg test config; ``mode`` 'whole' or
            'slide'. In 'whole' mode both tasks share one forward pass; in
            'slide' mode classification uses one extra whole-image pass.
            Optional ``min_lesion_area`` (fraction of the image, default 0:
            off): predicted foreground components smaller than this become
            background in ``pred_sem_seg``
            (:func:`~hermes_mm.models.utils.remove_small_components`).
            Optional ``lesion_classes`` (indices of the image classes whose
            images show a lesion, e.g. ``[0, 1]`` for BUSI's benign and
            malignant; default unset: off): the predicted mask decides
            lesion vs lesion-free and the classifier the class within
            that group (:func:`~hermes_mm.models.utils.mask_decides_lesion`;
            ``pred_label`` only, ``pred_score`` is kept).
        data_preprocessor (dict, optional): Usually ``SegDataPreProcessor``.
        pretrained (str, optional): Backbone checkpoint (MMSeg convention).
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 cls_head: ConfigType,
                 task_neck: ConfigType = dict(type='TaskSplitNeck'),
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 cls_loss_name: str = 'loss_cls',
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = dict(mode='whole'),
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None):
        if test_cfg is None:
            # MMSeg's predict crashes on test_cfg=None (DESIGN §4).
            test_cfg = dict(mode='whole')
        # MMSeg's slide inference reads ``test_cfg.mode`` as an attribute:
        # a plain dict (a model built from Python, not a Config) crashes it.
        test_cfg = ConfigDict(test_cfg)
        check_min_area(test_cfg.get('min_lesion_area', 0))
        # every channel key against one dummy forward of the backbone: one
        # error listing all wrong keys; unset ones are filled in
        check_channels(
            dict(backbone=backbone, neck=neck, task_neck=task_neck,
                 decode_head=decode_head, auxiliary_head=auxiliary_head,
                 cls_head=cls_head, data_preprocessor=data_preprocessor))
        super().__init__(
            backbone=backbone,
            decode_head=decode_head,
            neck=neck,
            auxiliary_head=auxiliary_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            pretrained=pretrained,
            init_cfg=init_cfg)
        if not cls_loss_name.startswith('loss'):
            raise ValueError('cls_loss_name must start with "loss" so that '
                             f'MMEngine sums it, got {cls_loss_name!r}')
        self.task_neck = MODELS.build(task_neck)
        self.cls_head = MODELS.build(cls_head)
        self.cls_loss_name = cls_loss_name
        if self.test_cfg.get('lesion_classes') is not None:
            check_lesion_classes(self.test_cfg.lesion_classes,
                                 getattr(self.cls_head, 'num_classes', None))

    # ------------------------------------------------------------------
    # features
    # ------------------------------------------------------------------
    def extract_task_feats(self, inputs: Tensor) -> TaskFeatures:
        """Backbone -> neck -> task neck.

        Args:
            inputs (Tensor): Normalised images (B, 3, H, W).

        Returns:
            TaskFeatures: Features for both branches.
        """
        return self.task_neck(super().extract_feat(inputs))

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Segmentation features (what MMSeg's inference code expects)."""
        return list(self.extract_task_feats(inputs).seg_feats)

    def classify(self, task_feats: TaskFeatures) -> Tensor:
        """Classification logits (B, K) from task features."""
        return self.cls_head((task_feats.cls_vec, ))

    def class_activation_maps(self, task_feats: TaskFeatures) -> Tensor:
        """Class activation maps (B, K, h, w) of a linear classifier.

        ``CAM_k(x) = w_k . F_c(x) + b_k``; since the pooled descriptor is a
        convex combination of ``F_c(x)``, the logit of class k is the same
        combination of its CAM.

        Raises:
            TypeError: If the classification head has no linear ``fc`` whose
                input size matches ``cls_map``.
        """
        fc = getattr(self.cls_head, 'fc', None)
        channels = task_feats.cls_map.shape[1]
        if not isinstance(fc, torch.nn.Linear) or fc.in_features != channels:
            raise TypeError(
                'class activation maps need a classification head with a '
                f'linear `fc` taking {channels} channels (e.g. '
                'mmpretrain.LinearClsHead); got '
                f'{type(self.cls_head).__name__}')
        weight = fc.weight[:, :, None, None]
        return F.conv2d(task_feats.cls_map, weight, fc.bias)

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    @staticmethod
    def stack_gt_masks(data_samples: SampleList) -> Tensor:
        """Ground-truth masks of a batch, (B, H, W) long."""
        return torch.stack(
            [sample.gt_sem_seg.data.squeeze(0) for sample in data_samples])

    def seg_losses(self, seg_logits: Tensor,
                   data_samples: SampleList) -> Dict[str, Tensor]:
        """Decode-head losses on given logits (its configured CE/Dice/...)."""
        return self.decode_head.loss_by_feat(seg_logits, data_samples)

    def cls_losses(self, cls_logits: Tensor,
                   data_samples: SampleList) -> Dict[str, Tensor]:
        """Classification-head losses on given logits."""
        losses = self.cls_head._get_loss(cls_logits, data_samples)
        return rename_loss_keys(losses, {'loss': self.cls_loss_name})

    def forward_train(self, inputs: Tensor) -> MultiTaskOutputs:
        """One forward pass through both branches (no post-processing)."""
        task_feats = self.extract_task_feats(inputs)
        return MultiTaskOutputs(
            task_feats=task_feats,
            seg_logits=self.decode_head(task_feats.seg_feats),
            cls_logits=self.classify(task_feats))

    def supervised_losses(self, outputs: MultiTaskOutputs,
                          data_samples: SampleList) -> Dict[str, Tensor]:
        """All supervised losses of a batch of labelled images.

        Args:
            outputs (MultiTaskOutputs): Outputs for exactly these images.
            data_samples (list[SegDataSample]): With ``gt_sem_seg`` and
                ``gt_label``.

        Returns:
            dict: ``seg.*``, ``aux.*``, ``cls.*`` and ``sal.*`` losses.
        """
        losses = dict()
        losses.update(
            add_prefix(
                self.seg_losses(outputs.seg_logits, data_samples), 'seg'))
        if self.with_auxiliary_head:
            losses.update(
                self._auxiliary_head_forward_train(
                    list(outputs.task_feats.seg_feats), data_samples))
        losses.update(
            add_prefix(
                self.cls_losses(outputs.cls_logits, data_samples), 'cls'))
        losses.update(
            add_prefix(
                self.task_neck.loss(outputs.task_feats,
                                    self.stack_gt_masks(data_samples)),
                'sal'))
        return losses

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Supervised multi-task losses of a labelled batch."""
        return self.supervised_losses(
            self.forward_train(inputs), data_samples)

    # ------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------
    def _batch_img_metas(self, inputs: Tensor,
                         data_samples: OptSampleList) -> List[dict]:
        if data_samples is not None:
            return [sample.metainfo for sample in data_samples]
        shape = inputs.shape[2:]
        return [
            dict(
                ori_shape=shape,
                img_shape=shape,
                pad_shape=shape,
                padding_size=[0, 0, 0, 0])
        ] * inputs.shape[0]

    def inference_both(self, inputs: Tensor,
                       batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor]:
        """Segmentation logits (at input size) and class logits.

        In 'whole' mode one forward pass serves both tasks.
        """
        if self.test_cfg.get('mode', 'whole') == 'whole':
            task_feats = self.extract_task_feats(inputs)
            seg_logits = self.decode_head.predict(task_feats.seg_feats,
                                                  batch_img_metas,
                                                  self.test_cfg)
            return seg_logits, self.classify(task_feats)
        seg_logits = self.inference(inputs, batch_img_metas)
        return seg_logits, self.classify(self.extract_task_feats(inputs))

    def postprocess_cls_result(self, cls_logits: Tensor,
                               data_samples: SampleList) -> SampleList:
        """Write ``pred_score`` (softmax) and ``pred_label`` into samples."""
        scores = cls_logits.softmax(dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        for sample, score, label in zip(data_samples, scores, labels):
            sample.set_data(dict(pred_score=score, pred_label=label))
        return data_samples

    def predict(self,
                inputs: Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """Predict the lesion mask and the image class.

        Returns:
            list[SegDataSample]: With ``seg_logits`` and ``pred_sem_seg``
            (resized to the original image), ``pred_score`` (K,) and
            ``pred_label`` (1,).
        """
        batch_img_metas = self._batch_img_metas(inputs, data_samples)
        seg_logits, cls_logits = self.inference_both(inputs, batch_img_metas)
        data_samples = self.postprocess_result(seg_logits, data_samples)
        min_area = self.test_cfg.get('min_lesion_area', 0)
        if min_area:
            for sample in data_samples:
                sample.pred_sem_seg.data = remove_small_components(
                    sample.pred_sem_seg.data, min_area)
        data_samples = self.postprocess_cls_result(cls_logits, data_samples)
        lesion_classes = self.test_cfg.get('lesion_classes')
        if lesion_classes is not None:
            has_lesion = torch.stack([(s.pred_sem_seg.data != 0).any()
                                      for s in data_samples])
            labels = mask_decides_lesion(
                torch.stack([s.pred_score for s in data_samples]),
                has_lesion.to(cls_logits.device), lesion_classes)
            for sample, label in zip(data_samples, labels):
                sample.pred_label = label[None]
        return data_samples

    def _forward(self,
                 inputs: Tensor,
                 data_samples: OptSampleList = None) -> Tuple[Tensor, Tensor]:
        """Raw network outputs: (seg logits at head resolution, class
        logits)."""
        outputs = self.forward_train(inputs)
        return outputs.seg_logits, outputs.cls_logits

    def seg_probabilities(self, seg_logits: Tensor,
                          size: Sequence[int]) -> Tensor:
        """Softmax of decode-head logits resized to ``size`` (B, C, H, W)."""
        return resize(
            seg_logits, size=tuple(size), mode='bilinear',
            align_corners=self.align_corners).softmax(dim=1)


__all__ = ['MultiTaskOutputs', 'MultiTaskSegmentor', 'rename_loss_keys']
