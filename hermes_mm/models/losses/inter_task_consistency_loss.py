"""Inter-task consistency between the segmentation and classification
branches (the inter-task term of Hermes, arXiv 2508.02265).

Where the segmentation branch sees the lesion and where the classification
branch looks (its ITAS saliency, or a normalised class activation map, CAM:
Zhou et al., CVPR 2016, https://arxiv.org/abs/1512.04150) should agree, and so
should the lesion features pooled under each. Two terms, per image with a
lesion:

* feature term: ``1 - cos(f_seg, f_cls)`` between the features pooled under
  the lesion probability and under the classification attention;
* map term: mean squared difference between the two maps.

Images without a lesion (BUSI "normal") are skipped through ``valid``: there
is nothing to localise and a CAM on them is meaningless.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from hermes_mm.registry import MODELS

# detach option -> (stop-gradient on the seg side, on the cls side)
_STOP_GRADIENT = {
    'seg': (True, False),
    'cls': (False, True),
    'none': (False, False),
}


def _check_detach(detach: str) -> None:
    if detach not in _STOP_GRADIENT:
        raise ValueError(f'detach must be one of {sorted(_STOP_GRADIENT)}, '
                         f'got {detach!r}')


def _as_map(prob: Tensor, name: str, feat_map: Tensor) -> Tensor:
    """(B, h, w) view of a (B, h, w) or (B, 1, h, w) map, shape-checked
    against ``feat_map`` (B, C, h, w)."""
    if prob.dim() == 4 and prob.shape[1] == 1:
        prob = prob[:, 0]
    batch, _, height, width = feat_map.shape
    if prob.shape != (batch, height, width):
        raise ValueError(f'{name} must have shape ({batch}, {height}, '
                         f'{width}) or ({batch}, 1, {height}, {width}) to '
                         f'match feat_map {tuple(feat_map.shape)}, got '
                         f'{tuple(prob.shape)} (resize it first)')
    return prob


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (B,) over ``mask`` (B,); 0 with the graph kept
    (and no host sync) when the mask is empty."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1)


def inter_task_consistency_loss(feat_map: Tensor,
                                seg_prob: Tensor,
                                cls_attn: Tensor,
                                valid: Tensor,
                                feature_weight: float = 1.0,
                                map_weight: float = 1.0,
                                detach: str = 'seg',
                                eps: float = 1e-6) -> Dict[str, Tensor]:
    """Feature and map consistency between segmentation and classification.

    .. math::

        f_{seg} = \\frac{\\sum_{xy} F_{xy} S_{xy}}{\\sum_{xy} S_{xy}}, \\quad
        f_{cls} = \\frac{\\sum_{xy} F_{xy} A_{xy}}{\\sum_{xy} A_{xy}}

        L_{feat} = 1 - \\cos(f_{seg}, f_{cls})
                 = \\tfrac12 \\lVert \\hat f_{seg} - \\hat f_{cls}
                   \\rVert^2, \\quad
        L_{map} = \\frac{1}{hw} \\sum_{xy} (A_{xy} - S_{xy})^2

    ``L_feat`` is computed in the second (equal) form, which is exactly 0 for
    identical features and has no cancellation error. ``L_map`` is a mean
    *squared* error: both maps lie in [0, 1], so it is bounded, and its
    gradient shrinks as the maps agree, so confident agreeing pixels are not
    pushed further (L1 would push every pixel with the same force, including
    ones that differ by noise only).

    ``detach`` chooses which side is a stop-gradient target. The default
    ``'seg'`` makes segmentation teach classification: the segmentation
    branch is trained by dense pixel labels (and pseudo-labels), so its
    lesion map is the sharper localisation, whereas a CAM / saliency map is
    coarse; letting the coarse map pull the sharp one would blur lesion
    boundaries. With ``'seg'`` the gradient reaches ``cls_attn`` and the
    features through ``f_cls`` only; with ``'cls'`` it reaches ``seg_prob``
    and the features through ``f_seg`` only; ``'none'`` trains both.

    Args:
        feat_map (Tensor): (B, C, h, w) shared features pooled by both maps.
        seg_prob (Tensor): (B, h, w) or (B, 1, h, w) lesion probability of
            the segmentation branch, in [0, 1], at the resolution of
            ``feat_map``.
        cls_attn (Tensor): (B, h, w) or (B, 1, h, w) attention of the
            classification branch in [0, 1] (ITAS saliency or a normalised
            CAM of the predicted lesion class), same resolution.
        valid (BoolTensor): (B,) images with a lesion; others are skipped.
        feature_weight (float): Weight of ``loss_feat``. Defaults to 1.0.
        map_weight (float): Weight of ``loss_map``. Defaults to 1.0.
        detach (str): 'seg', 'cls' or 'none', see above. Defaults to 'seg'.
        eps (float): Smallest attention mass (sum of a map) for which the
            pooled feature is defined; a valid image whose map mass is below
            it is left out of ``loss_feat`` (still in ``loss_map``). Also
            guards the normalisations. Defaults to 1e-6.

    Returns:
        dict[str, Tensor]: ``loss_feat`` and ``loss_map``, scalars, weighted,
        averaged over the valid images; 0 with the graph kept when none.
    """
    _check_detach(detach)
    if feat_map.dim() != 4:
        raise ValueError('feat_map must have shape (B, C, h, w), got '
                         f'{tuple(feat_map.shape)}')
    seg_prob = _as_map(seg_prob, 'seg_prob', feat_map)
    cls_attn = _as_map(cls_attn, 'cls_attn', feat_map)
    if valid.shape != feat_map.shape[:1]:
        raise ValueError(f'valid must have shape ({feat_map.shape[0]},), '
                         f'got {tuple(valid.shape)}')

    stop_seg, stop_cls = _STOP_GRADIENT[detach]
    seg_feats = feat_map.detach() if stop_seg else feat_map
    seg_prob = seg_prob.detach() if stop_seg else seg_prob
    cls_feats = feat_map.detach() if stop_cls else feat_map
    cls_attn = cls_attn.detach() if stop_cls else cls_attn

    seg_mass = seg_prob.sum(dim=(1, 2))
    cls_mass = cls_attn.sum(dim=(1, 2))
    f_seg = torch.einsum('bchw,bhw->bc', seg_feats,
                         seg_prob) / seg_mass.clamp_min(eps)[:, None]
    f_cls = torch.einsum('bchw,bhw->bc', cls_feats,
                         cls_attn) / cls_mass.clamp_min(eps)[:, None]
    per_feat = 0.5 * (F.normalize(f_seg, dim=1, eps=eps) -
                      F.normalize(f_cls, dim=1, eps=eps)).pow(2).sum(dim=1)
    per_map = (cls_attn - seg_prob).pow(2).mean(dim=(1, 2))

    valid = valid.bool()
    pooled = valid & (seg_mass > eps) & (cls_mass > eps)
    return dict(
        loss_feat=feature_weight * _masked_mean(per_feat, pooled),
        loss_map=map_weight * _masked_mean(per_map, valid))


@MODELS.register_module()
class InterTaskConsistencyLoss(nn.Module):
    """Inter-task consistency loss, see :func:`inter_task_consistency_loss`.

    Returns the two weighted terms ``(feature, map)`` as tensors, like
    every loss module here; ``InterTaskConsistencyHead`` names them
    ``{loss_name}_feat`` and ``{loss_name}_map`` in the loss dict.

    Args:
        feature_weight (float): Weight of the feature term. Defaults to 1.0.
        map_weight (float): Weight of the map term. Defaults to 1.0.
        detach (str): Stop-gradient side: 'seg' (segmentation teaches
            classification), 'cls' or 'none'. Defaults to 'seg'.
        eps (float): Smallest attention mass for a pooled feature.
            Defaults to 1e-6.
        loss_weight (float): Weight of both terms. Defaults to 1.0.
        loss_name (str): Prefix of the loss items, must start with
            ``loss_``. Defaults to 'loss_ict'.
    """

    def __init__(self,
                 feature_weight: float = 1.0,
                 map_weight: float = 1.0,
                 detach: str = 'seg',
                 eps: float = 1e-6,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ict') -> None:
        super().__init__()
        _check_detach(detach)
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        if not loss_name.startswith('loss_'):
            raise ValueError("loss_name must start with 'loss_' so MMEngine "
                             f'sums it, got {loss_name!r}')
        self.feature_weight = feature_weight
        self.map_weight = map_weight
        self.detach = detach
        self.eps = eps
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Prefix of the loss items in the loss dict."""
        return self._loss_name

    def forward(self, feat_map: Tensor, seg_prob: Tensor, cls_attn: Tensor,
                valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Weighted ``(feature term, map term)``; arguments as in
        :func:`inter_task_consistency_loss`."""
        losses = inter_task_consistency_loss(
            feat_map, seg_prob, cls_attn, valid, self.feature_weight,
            self.map_weight, self.detach, self.eps)
        return (self.loss_weight * losses['loss_feat'],
                self.loss_weight * losses['loss_map'])
