"""Pixel-level projection head for contrastive learning.

A 1x1-convolution MLP maps a feature map (B, C, h, w) to per-pixel
L2-normalised embeddings, the representation on which the pixel-level
contrastive loss compares anchor pixels with class prototypes and negatives.
Design as in pixel-contrast segmentation (Wang et al., ICCV 2021,
https://arxiv.org/abs/2101.11939) and U2PL (Wang et al., CVPR 2022,
https://arxiv.org/abs/2203.03884).
"""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.registry import MODELS
from .projection_head import batch_safe_norm

__all__ = ['PixelProjectionHead']


@MODELS.register_module()
class PixelProjectionHead(BaseModule):
    """1x1-conv MLP projection to per-pixel L2-normalised embeddings.

    ``num_layers - 1`` hidden blocks ``Conv1x1 -> norm -> act`` followed by
    a final ``Conv1x1``; every pixel's output vector has unit L2 norm.

    BatchNorm statistics are taken over all B * h * w pixels, so a training
    batch of one image is fine; only a single pixel in total (B = h = w = 1)
    falls back to running statistics (see
    :func:`~hermes_mm.models.heads.projection_head.batch_safe_norm`).

    Args:
        in_channels (int): Input feature channels C.
        hidden_channels (int): Width of the hidden layers (unused when
            ``num_layers`` is 1).
        out_channels (int): Embedding width.
        num_layers (int): Number of 1x1 conv layers, >= 1. Defaults to 2.
        norm_cfg (dict, optional): Norm after each hidden conv; None for
            none. Defaults to ``dict(type='BN')``.
        act_cfg (dict, optional): Activation after each hidden norm; None for
            none. Defaults to ``dict(type='ReLU')``.
        eps (float): Floor of the norm in the L2 normalisation, so a zero
            vector maps to zero instead of NaN. Defaults to 1e-12.
        init_cfg (dict or list[dict], optional): MMEngine initialisation
            config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 out_channels: int,
                 num_layers: int = 2,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 eps: float = 1e-12,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels),
                            ('hidden_channels', hidden_channels),
                            ('out_channels', out_channels),
                            ('num_layers', num_layers)):
            if value < 1:
                raise ValueError(f'{name} must be >= 1, got {value}')
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.eps = float(eps)

        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        channels = in_channels
        for _ in range(num_layers - 1):
            # a following norm re-centres, so the bias would be redundant
            self.convs.append(
                nn.Conv2d(
                    channels, hidden_channels, 1, bias=norm_cfg is None))
            self.norms.append(
                build_norm_layer(norm_cfg, hidden_channels)[1]
                if norm_cfg is not None else nn.Identity())
            self.acts.append(
                build_activation_layer(act_cfg)
                if act_cfg is not None else nn.Identity())
            channels = hidden_channels
        self.conv_out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Project maps (B, in_channels, h, w) to unit vectors per pixel
        (B, out_channels, h, w)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected input (B, {self.in_channels}, h, w), '
                             f'got {tuple(x.shape)}')
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            x = act(batch_safe_norm(norm, conv(x)))
        return F.normalize(self.conv_out(x), dim=1, eps=self.eps)
