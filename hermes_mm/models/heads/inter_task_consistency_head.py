"""Inter-task consistency term: the segmentation prediction against the
classification branch's attention, on images with a lesion."""
from typing import Dict, Optional, Sequence

import torch
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.registry import MODELS
from ..pseudo_labels import PseudoLabels


@MODELS.register_module()
class InterTaskConsistencyHead(BaseModule):
    """Owns the choice of attention, of images and the consistency loss.

    Args:
        loss (dict): ``InterTaskConsistencyLoss``.
        attention (str): Classification-branch attention: 'cam' (CAM of
            the predicted lesion class, needs a linear classifier) or
            'saliency' (the ITAS map).
        lesion_classes (sequence[int], optional): Indices of the image
            classes that have a lesion (CAM class choice); None = all.
        lesion_index (int): Segmentation class of the lesion.
        min_lesion_pixels (int): A strong view counts as "has a lesion" if
            its pseudo-label has at least this many reliable lesion pixels.
        min_lesion_confidence (float, optional): Also require the teacher
            to be this sure, at image level, that the view has a lesion:
            the summed probability of ``lesion_classes`` on an unmixed
            view (a mixed view has no image label and is skipped). Keeps
            the classifier from being aligned with false lesions on images
            the teacher calls lesion-free. None (default): pixels only.
        init_cfg (dict, optional): Initialisation config.
    """

    ATTENTIONS = ('cam', 'saliency')

    def __init__(self,
                 loss: dict,
                 attention: str = 'cam',
                 lesion_classes: Optional[Sequence[int]] = None,
                 lesion_index: int = 1,
                 min_lesion_pixels: int = 1,
                 min_lesion_confidence: Optional[float] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if attention not in self.ATTENTIONS:
            raise ValueError(f'attention must be one of {self.ATTENTIONS}, '
                             f'got {attention!r}')
        if min_lesion_confidence is not None and (
                lesion_classes is None or not 0 <= min_lesion_confidence <= 1):
            raise ValueError(
                'min_lesion_confidence needs lesion_classes (the image '
                'classes with a lesion) and a value in [0, 1], got '
                f'{min_lesion_confidence} with lesion_classes='
                f'{lesion_classes}')
        self.min_lesion_confidence = min_lesion_confidence
        self.loss_module = MODELS.build(loss)
        self.attention = attention
        self.lesion_classes = None if lesion_classes is None else list(
            lesion_classes)
        self.lesion_index = lesion_index
        self.min_lesion_pixels = min_lesion_pixels

    def classification_attention(self, student, outputs) -> Tensor:
        """The classification branch's spatial attention (B, h, w) in [0, 1].

        'saliency': the ITAS saliency map. 'cam': the class activation map
        of the predicted lesion class, ReLU'd and max-normalised per image.
        """
        task_feats = outputs.task_feats
        if self.attention == 'saliency':
            if task_feats.cls_attn is None:
                raise ValueError(
                    "attention='saliency' needs a task neck with a saliency "
                    "map (ITASNeck); use 'cam' otherwise")
            return task_feats.cls_attn[:, 0]
        cams = student.class_activation_maps(task_feats)
        logits = outputs.cls_logits.detach()
        if self.lesion_classes is not None:
            candidates = torch.tensor(self.lesion_classes,
                                      device=logits.device)
            chosen = candidates[logits[:, candidates].argmax(dim=1)]
        else:
            chosen = logits.argmax(dim=1)
        cam = cams[torch.arange(cams.shape[0]), chosen].relu()
        peak = cam.flatten(1).max(dim=1).values.clamp(
            min=torch.finfo(cam.dtype).eps)
        return cam / peak[:, None, None]

    def confident_lesion_images(self, pseudo: PseudoLabels) -> Tensor:
        """(B,) unlabelled views the teacher is sure have a lesion, at
        image level (all True without ``min_lesion_confidence``)."""
        if self.min_lesion_confidence is None:
            return torch.ones_like(pseudo.mixed)
        lesion_prob = pseudo.cls_probs[:, self.lesion_classes].sum(dim=1)
        # the term compares one view's maps: the teacher's image-level
        # probability describes an unmixed view only
        return ~pseudo.mixed & (lesion_prob >= self.min_lesion_confidence)

    def loss(self, student, outputs, gt_masks: Tensor,
             pseudo: PseudoLabels) -> Dict[str, Tensor]:
        """The term on labelled images with a lesion and strong views with
        enough reliable lesion pixels.

        Args:
            student (MultiTaskSegmentor): The student (CAMs, probabilities).
            outputs (MultiTaskOutputs): Its outputs on the labelled images
                then the strong views.
            gt_masks (LongTensor): (L, H, W) labelled ground truth.
            pseudo (PseudoLabels): The strong views' pseudo-labels.
        """
        cls_map = outputs.task_feats.cls_map
        seg_prob = student.seg_probabilities(
            outputs.seg_logits, tuple(cls_map.shape[2:]))[:, self.lesion_index]
        sup_valid = (gt_masks == self.lesion_index).flatten(1).any(dim=1)
        valid = torch.cat([
            sup_valid,
            pseudo.lesion_images(self.lesion_index, self.min_lesion_pixels)
            & self.confident_lesion_images(pseudo)
        ])
        feat, map_ = self.loss_module(
            cls_map, seg_prob, self.classification_attention(student, outputs),
            valid)
        name = self.loss_module.loss_name
        return {f'{name}_feat': feat, f'{name}_map': map_}
