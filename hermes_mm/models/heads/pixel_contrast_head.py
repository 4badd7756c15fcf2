"""Pixel-level dual-threshold contrastive term: projector, targets, loss."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.registry import MODELS
from ..pseudo_labels import PseudoLabels


def gather_pixels(dense: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of ``flatten_pixels(dense)``, (U, C), without
    materialising the (B*H*W, C) matrix."""
    area = dense.shape[2] * dense.shape[3]
    return dense.flatten(2)[index // area, :, index % area]


@MODELS.register_module()
class PixelContrastHead(BaseModule):
    """Pixel anchors vs. class prototypes (positive) and other-class /
    ambiguous pixels (hard negatives).

    Targets are built at the resolution of segmentation feature level
    ``in_index``: labelled pixels from the ground truth, unlabelled ones
    from the teacher's probabilities pooled to that size and cut with the
    same dual thresholds as the pixel pseudo-labels. Pixels are sampled
    from labels and masks first; only the sampled feature vectors are
    projected (``projector.forward_pixels``) and compared, so time and
    memory stay flat as the image grows.

    Args:
        projector (dict): ``PixelProjectionHead``.
        loss (dict): ``PixelContrastLoss``.
        in_index (int): Segmentation feature level of the embeddings.
        ignore_index (int): Ground-truth label of ignored pixels (filled in
            by the segmentor).
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 projector: dict,
                 loss: dict,
                 in_index: int = 0,
                 ignore_index: int = 255,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.projector = MODELS.build(projector)
        self.loss_module = MODELS.build(loss)
        self.in_index = in_index
        self.ignore_index = ignore_index

    @property
    def steps_without_pairs(self) -> Tensor:
        """Consecutive steps without an anchor that has a positive."""
        return self.loss_module.steps_without_pairs

    def targets(self, gt_masks: Tensor, pseudo: PseudoLabels,
                size: Tuple[int, int]) -> Dict[str, Tensor]:
        """Per-pixel labels, anchor masks and negative classes at ``size``
        for labelled (ground truth ``gt_masks`` (L, H, W)) and unlabelled
        (teacher zones) images, labelled first."""
        gt = F.interpolate(gt_masks[:, None].float(), size=size,
                           mode='nearest').long().flatten()
        sup_valid = gt != self.ignore_index
        zones, region = pseudo.pixel_zones_at(size)
        labels = torch.cat([gt.masked_fill(~sup_valid, 0), zones.pseudo_label])
        anchors = torch.cat([sup_valid, zones.reliable & region])
        negatives = torch.cat([
            torch.zeros(
                gt.numel(),
                zones.negative_classes.shape[1],
                dtype=torch.bool,
                device=gt.device), zones.negative_classes & region[:, None]
        ])
        return dict(labels=labels, anchors=anchors, negatives=negatives)

    def loss(self, seg_feats, gt_masks: Tensor,
             pseudo: PseudoLabels) -> Dict[str, Tensor]:
        """The term on one batch, then the prototype update.

        Args:
            seg_feats (sequence[Tensor]): Segmentation features of the
                labelled images then the strong views; level ``in_index``
                is used.
            gt_masks (LongTensor): (L, H, W) labelled ground truth.
            pseudo (PseudoLabels): The strong views' pseudo-labels.
        """
        feats = seg_feats[self.in_index]
        targets = self.targets(gt_masks, pseudo, tuple(feats.shape[2:]))
        sample = self.loss_module.sample(targets['labels'],
                                         targets['anchors'],
                                         targets['negatives'])
        # Nothing sampled: still run the projector on one pixel so every
        # parameter is in the graph (DDP), and return 0.
        index = sample.index if sample.index.numel() else \
            sample.index.new_zeros(1)
        projected = self.projector.forward_pixels(gather_pixels(feats, index))
        embeddings = projected[:sample.index.numel()]  # (0, D) if empty
        loss = self.loss_module.forward_sampled(
            embeddings, sample) + projected.sum() * 0
        # Unconditional: update_prototypes all-reduces, so every rank calls
        # it every step, with an empty sample too (it then changes nothing).
        self.loss_module.update_prototypes(
            embeddings.detach(), sample.labels, sample.anchor_mask)
        return {self.loss_module.loss_name: loss}
