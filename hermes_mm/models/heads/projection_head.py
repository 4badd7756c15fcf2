"""Image-level projection head for contrastive learning.

An MLP maps the pooled classification descriptor (B, C) to an L2-normalised
embedding on the unit sphere, where the supervised-contrastive (SupCon) loss
compares images by cosine similarity. As in SimCLR (Chen et al., ICML 2020,
https://arxiv.org/abs/2002.05709) and SupCon (Khosla et al., NeurIPS 2020,
https://arxiv.org/abs/2004.11362), the head is used for the contrastive loss
only, so the classifier keeps the un-projected descriptor.
"""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from hermes_mm.registry import MODELS

__all__ = ['ProjectionHead', 'batch_safe_norm']


def batch_safe_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """Apply ``norm`` to ``x``, tolerating one value per channel in training.

    Why: a BatchNorm layer in training mode needs more than one value per
    channel to compute batch statistics; PyTorch raises otherwise (e.g. a
    (1, C) batch in an MLP head, which happens with batch size 1 per GPU or
    a last, one-image batch of unlabelled data). In that case BatchNorm here
    normalises with its running statistics, exactly as in eval mode, and
    leaves them (and ``num_batches_tracked``) unchanged. ``SyncBatchNorm``
    is left alone: it gathers statistics across processes, so one value per
    process is fine. Every other case calls ``norm(x)``.

    Args:
        norm (nn.Module): A normalisation layer (or ``nn.Identity``).
        x (Tensor): Input (B, C, ...).

    Returns:
        Tensor: Normalised ``x``, same shape.
    """
    single_value = x.numel() == x.shape[1]
    if (single_value and norm.training and isinstance(norm, _BatchNorm)
            and not isinstance(norm, nn.SyncBatchNorm)
            and norm.running_mean is not None):
        return F.batch_norm(x, norm.running_mean, norm.running_var,
                            norm.weight, norm.bias, False, 0.0, norm.eps)
    return norm(x)


@MODELS.register_module()
class ProjectionHead(BaseModule):
    """MLP projection to L2-normalised embeddings (SupCon-style).

    ``num_layers - 1`` hidden blocks ``Linear -> norm -> act`` followed by
    a final ``Linear``; the output rows have unit L2 norm.

    With the default BatchNorm, a training batch of one image cannot give
    batch statistics: the norm then uses its running statistics without
    updating them (see :func:`batch_safe_norm`); in eval mode any batch size
    works. Pass ``norm_cfg=dict(type='LN')`` for a batch-independent head,
    or None for no norm.

    Args:
        in_channels (int): Input descriptor width C.
        hidden_channels (int): Width of the hidden layers (unused when
            ``num_layers`` is 1).
        out_channels (int): Embedding width.
        num_layers (int): Number of linear layers, >= 1. Defaults to 2.
        norm_cfg (dict, optional): Norm after each hidden linear layer (a
            1-d norm such as ``BN1d`` or ``LN``); None for none. Defaults to
            ``dict(type='BN1d')``.
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
                 norm_cfg: Optional[dict] = dict(type='BN1d'),
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

        self.fcs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        channels = in_channels
        for _ in range(num_layers - 1):
            # a following norm re-centres, so the bias would be redundant
            self.fcs.append(
                nn.Linear(channels, hidden_channels, bias=norm_cfg is None))
            self.norms.append(
                build_norm_layer(norm_cfg, hidden_channels)[1]
                if norm_cfg is not None else nn.Identity())
            self.acts.append(
                build_activation_layer(act_cfg)
                if act_cfg is not None else nn.Identity())
            channels = hidden_channels
        self.fc_out = nn.Linear(channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Project descriptors (B, in_channels) to unit vectors (B, out)."""
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected input (B, {self.in_channels}), got '
                             f'{tuple(x.shape)}')
        for fc, norm, act in zip(self.fcs, self.norms, self.acts):
            x = act(batch_safe_norm(norm, fc(x)))
        return F.normalize(self.fc_out(x), dim=1, eps=self.eps)
