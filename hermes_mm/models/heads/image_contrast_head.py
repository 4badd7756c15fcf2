"""Image-level dual-threshold contrastive term: projector, targets, loss."""
from typing import Dict

import torch
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.registry import MODELS
from ..pseudo_labels import PseudoLabels


@MODELS.register_module()
class ImageContrastHead(BaseModule):
    """SupCon over labelled (true labels) and reliable unlabelled
    (pseudo-labels) image embeddings; ambiguous images are negatives only;
    the loss's per-class queue adds positives across iterations.

    Args:
        projector (dict): Projection head on the classification vector
            (``ProjectionHead``).
        loss (dict): ``DualThresholdSupConLoss``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self, projector: dict, loss: dict, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.projector = MODELS.build(projector)
        self.loss_module = MODELS.build(loss)

    @property
    def steps_without_pairs(self) -> Tensor:
        """Consecutive steps without an anchor that has a positive."""
        return self.loss_module.steps_without_pairs

    def loss(self, cls_vec: Tensor, sup_labels: Tensor,
             pseudo: PseudoLabels) -> Dict[str, Tensor]:
        """The term on one batch, then the queue update.

        Args:
            cls_vec (Tensor): (L + U, C) classification vectors, labelled
                images first.
            sup_labels (LongTensor): (L,) labels of the labelled images.
            pseudo (PseudoLabels): The unlabelled images' pseudo-labels.
        """
        cls_zones = pseudo.cls_zones
        usable = pseudo.cls_usable
        embeddings = self.projector(cls_vec)
        labels = torch.cat([sup_labels, cls_zones.pseudo_label])
        anchors = torch.cat([
            torch.ones_like(sup_labels, dtype=torch.bool),
            cls_zones.reliable & usable
        ])
        negatives = torch.cat([
            torch.zeros(
                len(sup_labels),
                cls_zones.negative_classes.shape[1],
                dtype=torch.bool,
                device=labels.device),
            cls_zones.negative_classes & usable[:, None]
        ])
        loss = self.loss_module(embeddings, labels, anchors, negatives)
        self.loss_module.enqueue(embeddings.detach(), labels, anchors)
        return {self.loss_module.loss_name: loss}
