"""A task neck without task interaction: the baseline the ITAS neck is
compared against (``configs/ablations/hermes_busi_no_itas.py``)."""
from typing import Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from hermes_mm.registry import MODELS
from .task_features import TaskFeatures


@MODELS.register_module()
class TaskSplitNeck(nn.Module):
    """Hand the same backbone features to both tasks, with no interaction.

    The decode head gets the input maps unchanged; the classification
    branch gets one level (``cls_in_index``), global-average pooled.

    Args:
        cls_in_index (int): Which input level feeds classification.
            Defaults to -1 (the deepest).
    """

    def __init__(self, cls_in_index: int = -1) -> None:
        super().__init__()
        self.cls_in_index = cls_in_index

    def forward(self, feats: Sequence[Tensor]) -> TaskFeatures:
        """Split ``feats`` (tuple of (B, C_i, H_i, W_i)) into task inputs."""
        feats: Tuple[Tensor, ...] = tuple(feats)
        cls_map = feats[self.cls_in_index]
        return TaskFeatures(
            seg_feats=feats, cls_map=cls_map, cls_vec=cls_map.mean((2, 3)))

    def loss(self, task_feats: TaskFeatures, gt_masks: Tensor) -> dict:
        """No auxiliary supervision: an empty loss dict."""
        return {}
