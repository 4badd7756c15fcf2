"""The features a task neck hands to the segmentation and classification
branches of :class:`~hermes_mm.models.segmentors.MultiTaskSegmentor`."""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor


@dataclass
class TaskFeatures:
    """Output of a task neck (``TaskSplitNeck`` or ``ITASNeck``).

    Attributes:
        seg_feats (tuple[Tensor]): Multi-scale maps for the decode head,
            same number, order and channels as the neck's input.
        cls_map (Tensor): Spatial features of the classification branch,
            (B, C, h, w); the classifier applied to it per pixel gives a CAM.
        cls_vec (Tensor): Pooled classification descriptor (B, C), the input
            of the classification head.
        saliency_logits (Tensor, optional): Lesion saliency logits
            (B, 1, h, w) at ``cls_map`` resolution; None without ITAS.
        cls_attn (Tensor, optional): The classification branch's own spatial
            attention in [0, 1], (B, 1, h, w) (ITAS: the sigmoid saliency);
            None when the branch has none.
    """
    seg_feats: Tuple[Tensor, ...]
    cls_map: Tensor
    cls_vec: Tensor
    saliency_logits: Optional[Tensor] = None
    cls_attn: Optional[Tensor] = None

    def slice(self, start: int, stop: int) -> 'TaskFeatures':
        """The features of images ``start:stop`` of the batch."""

        def part(x: Optional[Tensor]) -> Optional[Tensor]:
            return None if x is None else x[start:stop]

        return TaskFeatures(
            seg_feats=tuple(f[start:stop] for f in self.seg_feats),
            cls_map=self.cls_map[start:stop],
            cls_vec=self.cls_vec[start:stop],
            saliency_logits=part(self.saliency_logits),
            cls_attn=part(self.cls_attn))

    @staticmethod
    def cat(first: 'TaskFeatures', second: 'TaskFeatures') -> 'TaskFeatures':
        """The features of ``first``'s images followed by ``second``'s
        (the inverse of :meth:`slice`)."""

        def join(a: Optional[Tensor], b: Optional[Tensor]) -> Optional[Tensor]:
            if (a is None) != (b is None):
                raise ValueError('cannot concatenate task features with and '
                                 'without the same optional maps')
            return None if a is None else torch.cat([a, b])

        return TaskFeatures(
            seg_feats=tuple(
                torch.cat([a, b])
                for a, b in zip(
                    first.seg_feats, second.seg_feats, strict=True)),
            cls_map=torch.cat([first.cls_map, second.cls_map]),
            cls_vec=torch.cat([first.cls_vec, second.cls_vec]),
            saliency_logits=join(first.saliency_logits,
                                 second.saliency_logits),
            cls_attn=join(first.cls_attn, second.cls_attn))
