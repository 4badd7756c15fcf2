"""Inter-task attention & saliency (ITAS) neck of Hermes.

The two tasks exchange evidence in both directions:

* **segmentation -> classification**: a 1-channel lesion saliency map
  ``A = sigmoid(conv(F))``, supervised on labelled images by the
  down-sampled lesion mask, re-weights the classification features
  (``F_c = F * (1 + A)``) and their pooling (saliency-weighted mixed with
  global average pooling);
* **classification -> segmentation**: the pooled classification descriptor
  drives a squeeze-and-excitation style channel gate on the segmentation
  features, at the levels the config names.

Hermes: arXiv 2508.02265 (our reading, see ``docs/method.md``). The channel
gate follows Squeeze-and-Excitation (Hu et al., CVPR 2018,
https://arxiv.org/abs/1709.01507).
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.registry import MODELS
from .task_features import TaskFeatures

__all__ = ['ITASNeck', 'saliency_loss', 'saliency_targets']


def saliency_targets(gt_masks: Tensor, size: Tuple[int, int],
                     ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Down-sample a lesion mask to soft saliency targets by area.

    Each saliency cell's target is the fraction of its *valid* (not
    ``ignore_index``) pixels that are lesion. Any valid label other than 0
    (background) counts as lesion.

    Args:
        gt_masks (Tensor): Integer masks (B, H, W) or (B, 1, H, W) at input
            resolution, values {0, 1} or ``ignore_index``.
        size (tuple[int, int]): Saliency resolution (h, w).
        ignore_index (int): Label of pixels that carry no supervision (e.g.
            padding).

    Returns:
        tuple[Tensor, Tensor]: ``target`` (B, 1, h, w) in [0, 1] and
        ``valid`` (B, 1, h, w) bool, False where a cell holds no valid pixel
        (its target is then 0 and must be ignored).
    """
    if gt_masks.dim() == 3:
        gt_masks = gt_masks[:, None]
    if gt_masks.dim() != 4 or gt_masks.shape[1] != 1:
        raise ValueError('gt_masks must be (B, H, W) or (B, 1, H, W), got '
                         f'shape {tuple(gt_masks.shape)}')
    valid_px = gt_masks != ignore_index
    lesion_px = valid_px & (gt_masks != 0)
    valid_frac = F.adaptive_avg_pool2d(valid_px.float(), size)
    lesion_frac = F.adaptive_avg_pool2d(lesion_px.float(), size)
    valid = valid_frac > 0
    # cells without valid pixels divide by 1 (target 0) and are masked out
    target = lesion_frac / torch.where(valid, valid_frac,
                                       torch.ones_like(valid_frac))
    # lesion pixels are a subset of valid ones, so the ratio is <= 1 up to
    # float rounding; clamp so BCE always gets a legal target.
    return target.clamp(0, 1), valid


def saliency_loss(saliency_logits: Tensor, gt_masks: Tensor,
                  ignore_index: int) -> Tensor:
    """Binary cross-entropy of saliency logits against area-pooled masks.

    .. math::
        L = \\frac{1}{|V|} \\sum_{c \\in V} \\mathrm{BCE}(a_c, t_c)

    where ``t_c`` is the lesion fraction of cell ``c`` (see
    :func:`saliency_targets`) and ``V`` the cells with at least one valid
    pixel. Returns ``saliency_logits.sum() * 0`` when no cell is valid, so
    the graph (and DDP's used-parameter set) stays the same.

    Args:
        saliency_logits (Tensor): (B, 1, h, w) logits.
        gt_masks (Tensor): (B, H, W) or (B, 1, H, W) integer masks.
        ignore_index (int): Label of unsupervised pixels.

    Returns:
        Tensor: Scalar loss.
    """
    target, valid = saliency_targets(
        gt_masks.to(saliency_logits.device), saliency_logits.shape[-2:],
        ignore_index)
    if not bool(valid.any()):
        return saliency_logits.sum() * 0
    per_cell = F.binary_cross_entropy_with_logits(
        saliency_logits.float(), target, reduction='none')
    weight = valid.float()
    return (per_cell * weight).sum() / weight.sum()


def _normalise_index(index: int, num_levels: int, name: str) -> int:
    """Map a (possibly negative) level index to [0, num_levels)."""
    if not -num_levels <= index < num_levels:
        raise ValueError(f'{name}={index} is out of range for '
                         f'{num_levels} input levels')
    return index % num_levels


@MODELS.register_module()
class ITASNeck(BaseModule):
    """Inter-task attention & saliency neck: a drop-in for ``TaskSplitNeck``.

    With ``F = feats[cls_in_index]``:

    .. math::
        A = \\sigma(\\mathrm{sal}(F)), \\quad F_c = F \\odot (1 + A), \\\\
        v = \\lambda \\frac{\\sum_p F_c(p) A(p)}{\\sum_p A(p) + \\epsilon}
            + (1 - \\lambda) \\frac{1}{hw} \\sum_p F_c(p), \\\\
        g_i = \\sigma(\\mathrm{MLP}_i(v)), \\quad
        S_i = X_i \\odot (1 + g_i) \\quad (i \\in \\text{gate\\_indices})

    ``A`` highlights the lesion for the classifier (``1 + A`` keeps context
    where ``A`` is 0), ``v`` (``cls_vec``) is the classification descriptor,
    and the segmentation features ``S_i`` are re-weighted per channel by the
    descriptor. The gate is *residual* (``1 + g``, in [1, 2]): an untrained
    or saturated gate can only amplify channels, never zero a level, so the
    decode head starts from the backbone's features. Levels outside
    ``gate_indices`` pass through unchanged (the very same tensors).

    The saliency map is supervised by :meth:`loss` on labelled images only.
    Images with an empty mask (BUSI "normal") teach ``A ~ 0`` everywhere;
    this is intended: with no lesion, the classifier should fall back to
    global context (``F_c ~ F``, pooling ~ global average).

    Args:
        in_channels (Sequence[int]): Channels of each input level, in the
            backbone's (or preceding neck's) output order.
        cls_in_index (int): Level feeding classification and the saliency
            map; negative values count from the end. Defaults to -1.
        gate_indices (Sequence[int], optional): Levels of the segmentation
            features gated by the classification descriptor; negative values
            count from the end. None gates every level; an empty sequence
            disables gating. Gate only levels the decode head reads (e.g.
            ``(-1,)`` for an ``FCNHead`` with ``in_index=-1``): a gate whose
            output is unused gets no gradient, which DDP rejects unless
            ``find_unused_parameters=True``. Defaults to None.
        reduction (int): Bottleneck ratio of each gate MLP
            (``C_cls -> max(1, C_cls // reduction) -> C_i``). Defaults to 4.
        pool_mix (float): Weight ``lambda`` in [0, 1] of saliency-weighted
            pooling in ``cls_vec``; the rest is global average pooling of
            ``F_c``. Defaults to 0.5.
        saliency_channels (int): Hidden width of the saliency branch (3x3
            ConvModule, then a 1x1 conv to one channel). Defaults to 64.
        norm_cfg (dict, optional): Norm of the saliency ConvModule; None for
            none. Defaults to ``dict(type='BN')``.
        act_cfg (dict, optional): Activation of the saliency ConvModule and
            of the gate MLPs' hidden layer; None for none. Defaults to
            ``dict(type='ReLU')``.
        sal_loss_weight (float): Weight of ``loss_sal``. Defaults to 1.0.
        ignore_index (int): Mask label of pixels without supervision.
            Defaults to 255.
        eps (float): Added to the saliency mass in the weighted pooling so
            an all-zero map does not divide by zero. Defaults to 1e-6.
        init_cfg (dict or list[dict], optional): MMEngine initialisation
            config. Defaults to None.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 cls_in_index: int = -1,
                 gate_indices: Optional[Sequence[int]] = None,
                 reduction: int = 4,
                 pool_mix: float = 0.5,
                 saliency_channels: int = 64,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 sal_loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 eps: float = 1e-6,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(int(c) for c in in_channels)
        if not in_channels or min(in_channels) < 1:
            raise ValueError('in_channels must be a non-empty sequence of '
                             f'positive ints, got {in_channels}')
        num_levels = len(in_channels)
        if gate_indices is None:
            gate_indices = range(num_levels)
        gate_indices = tuple(
            _normalise_index(i, num_levels, 'gate_indices entry')
            for i in gate_indices)
        if len(set(gate_indices)) != len(gate_indices):
            raise ValueError('gate_indices must name each level at most '
                             f'once, got {gate_indices}')
        if reduction < 1:
            raise ValueError(f'reduction must be >= 1, got {reduction}')
        if not 0.0 <= pool_mix <= 1.0:
            raise ValueError(f'pool_mix must be in [0, 1], got {pool_mix}')
        if saliency_channels < 1:
            raise ValueError(
                f'saliency_channels must be >= 1, got {saliency_channels}')
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')

        self.in_channels = in_channels
        self.cls_in_index = _normalise_index(cls_in_index, num_levels,
                                             'cls_in_index')
        self.gate_indices = gate_indices
        self.reduction = reduction
        self.pool_mix = float(pool_mix)
        self.sal_loss_weight = float(sal_loss_weight)
        self.ignore_index = ignore_index
        self.eps = float(eps)

        cls_channels = in_channels[self.cls_in_index]
        self.sal_conv = nn.Sequential(
            ConvModule(
                cls_channels,
                saliency_channels,
                kernel_size=3,
                padding=1,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg),
            nn.Conv2d(saliency_channels, 1, kernel_size=1))
        hidden = max(1, cls_channels // reduction)
        # one gate MLP per gated level, in gate_indices order
        self.gates = nn.ModuleList([
            nn.Sequential(
                nn.Linear(cls_channels, hidden),
                build_activation_layer(act_cfg)
                if act_cfg is not None else nn.Identity(),
                nn.Linear(hidden, in_channels[i])) for i in gate_indices
        ])

    def forward(self, feats: Sequence[Tensor]) -> TaskFeatures:
        """Compute the task features.

        Args:
            feats (Sequence[Tensor]): Input maps, level i of shape
                (B, in_channels[i], H_i, W_i).

        Returns:
            TaskFeatures: ``seg_feats`` (same shapes as ``feats``),
            ``cls_map`` = ``F_c`` (B, C_cls, h, w), ``cls_vec`` (B, C_cls),
            ``saliency_logits`` (B, 1, h, w) and ``cls_attn`` = ``A``.
        """
        feats = tuple(feats)
        if len(feats) != len(self.in_channels):
            raise ValueError(f'expected {len(self.in_channels)} input levels '
                             f'(in_channels={self.in_channels}), got '
                             f'{len(feats)}')
        channels = tuple(x.shape[1] for x in feats)
        if channels != self.in_channels:
            raise ValueError(f'input channels {channels} do not match '
                             f'in_channels={self.in_channels}')

        feat = feats[self.cls_in_index]
        sal_logits = self.sal_conv(feat)
        attn = sal_logits.sigmoid()
        cls_map = feat * (1 + attn)
        cls_vec = self._pool(cls_map, attn)

        seg_feats = list(feats)
        for level, gate in zip(self.gate_indices, self.gates):
            g = gate(cls_vec).sigmoid()
            seg_feats[level] = feats[level] * (1 + g[:, :, None, None])
        return TaskFeatures(
            seg_feats=tuple(seg_feats),
            cls_map=cls_map,
            cls_vec=cls_vec,
            saliency_logits=sal_logits,
            cls_attn=attn)

    def _pool(self, cls_map: Tensor, attn: Tensor) -> Tensor:
        """Mix saliency-weighted and global average pooling: (B, C)."""
        weighted = (cls_map * attn).sum((2, 3)) / (
            attn.sum((2, 3)) + self.eps)
        return self.pool_mix * weighted + (
            1 - self.pool_mix) * cls_map.mean((2, 3))

    def loss(self, task_feats: TaskFeatures,
             gt_masks: Tensor) -> Dict[str, Tensor]:
        """Saliency supervision from the lesion masks of labelled images.

        Args:
            task_feats (TaskFeatures): Output of :meth:`forward` on the
                labelled images.
            gt_masks (Tensor): (B, H, W) (or (B, 1, H, W)) integer masks at
                input resolution, values {0, 1} or ``ignore_index``.

        Returns:
            dict[str, Tensor]: ``loss_sal``, see :func:`saliency_loss`.
        """
        loss = saliency_loss(task_feats.saliency_logits, gt_masks,
                             self.ignore_index)
        return dict(loss_sal=loss * self.sal_loss_weight)
