"""Pure-PyTorch stand-ins for the few ``mmcv.ops`` that MMSegmentation imports.

``mmcv-lite`` ships the Python files of ``mmcv.ops`` but not the compiled
``mmcv._ext`` extension, so ``import mmcv.ops`` raises and, because
MMSegmentation 1.2.2 imports ``point_sample`` and ``sigmoid_focal_loss``
eagerly (``mmseg/utils/mask_classification.py``,
``mmseg/models/losses/focal_loss.py``), ``import mmseg.models`` fails on a
CPU-only install (https://github.com/open-mmlab/mmsegmentation/issues/3337).

:func:`install` puts a small module in ``sys.modules['mmcv.ops']`` that
provides exactly those two functions and raises ``ModuleNotFoundError`` for
every other name, so MMSeg's own ``try/except ModuleNotFoundError`` guards
(``CrissCrossAttention``, ``PSAMask``) keep working and any model that
really needs a compiled op fails with a message saying what to install.
Nothing is installed when the compiled extension exists: a full ``mmcv`` is
never shadowed.
"""
import importlib.util
import sys
import types
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

FALLBACK_MODULE_NAME = 'mmcv.ops'
_INSTALL_HINT = ("install a full mmcv with compiled ops, e.g. "
                 "`mim install \"mmcv==2.1.0\"` (GPU) instead of mmcv-lite")


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` at normalised ``points`` (same as ``mmcv.ops``).

    Args:
        input (Tensor): Feature map of shape (N, C, H, W).
        points (Tensor): Points in [0, 1] x [0, 1], shape (N, P, 2) or
            (N, Hgrid, Wgrid, 2).
        align_corners (bool): As in :func:`torch.nn.functional.grid_sample`.

    Returns:
        Tensor: (N, C, P) or (N, C, Hgrid, Wgrid).
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    output = F.grid_sample(
        input, points * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    return output.squeeze(3) if add_dim else output


def sigmoid_focal_loss(input: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """Sigmoid focal loss with mmcv's CUDA-kernel semantics.

    ``target`` holds class indices; an index equal to ``C`` means "no
    class" (all sigmoids are negatives). ``weight`` is a per-class weight
    indexed by the target, as in mmcv. ``'mean'`` divides the summed loss by
    the number of rows ``N`` (not ``N * C``), as mmcv does.

    Args:
        input (Tensor): Logits of shape (N, C).
        target (Tensor): Long tensor of shape (N,), values in [0, C].
        gamma (float): Focusing parameter.
        alpha (float): Weight of the positive term.
        weight (Tensor, optional): Per-class weight of shape (C,).
        reduction (str): 'none' | 'mean' | 'sum'.

    Returns:
        Tensor: (N, C) for 'none', else a scalar.
    """
    if input.dim() != 2 or target.dim() != 1 or \
            input.size(0) != target.size(0):
        raise ValueError('sigmoid_focal_loss expects input (N, C) and target '
                         f'(N,), got {tuple(input.shape)} and '
                         f'{tuple(target.shape)}')
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got "
                         f'{reduction!r}')
    num_classes = input.size(1)
    one_hot = F.one_hot(target.clamp(max=num_classes),
                        num_classes + 1)[:, :num_classes].to(input.dtype)
    prob = input.sigmoid()
    # log(sigmoid(x)) and log(1 - sigmoid(x)) computed stably.
    pos = -alpha * (1 - prob).pow(gamma) * F.logsigmoid(input)
    neg = -(1 - alpha) * prob.pow(gamma) * F.logsigmoid(-input)
    loss = one_hot * pos + (1 - one_hot) * neg
    if weight is not None and weight.numel() > 0:
        valid = target < num_classes
        row_weight = torch.ones_like(target, dtype=input.dtype)
        row_weight[valid] = weight.to(input.dtype)[target[valid]]
        loss = loss * row_weight[:, None]
    if reduction == 'mean':
        return loss.sum() / input.size(0)
    if reduction == 'sum':
        return loss.sum()
    return loss


FALLBACK_OPS = {
    'point_sample': point_sample,
    'sigmoid_focal_loss': sigmoid_focal_loss,
}


class _FallbackOpsModule(types.ModuleType):
    """``mmcv.ops`` replacement: the fallback ops and nothing else."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs the compiled mmcv extension (mmcv._ext), '
            f'which is missing (mmcv-lite); hermes_mm only provides '
            f'{sorted(FALLBACK_OPS)} as pure-PyTorch fallbacks. To use '
            f'{name}, {_INSTALL_HINT}.',
            name=f'mmcv.ops.{name}')

    def __dir__(self):
        return sorted(FALLBACK_OPS)


def compiled_ops_available() -> bool:
    """Whether mmcv's compiled extension ``mmcv._ext`` can be imported."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


def install() -> bool:
    """Install the fallback ``mmcv.ops`` if, and only if, it is needed.

    Returns:
        bool: True if the fallback module is (now) in ``sys.modules``.
    """
    existing = sys.modules.get(FALLBACK_MODULE_NAME)
    if isinstance(existing, _FallbackOpsModule):
        return True
    if existing is not None or compiled_ops_available():
        # A real mmcv.ops is importable or already imported: never shadow.
        return False
    module = _FallbackOpsModule(
        FALLBACK_MODULE_NAME,
        'hermes_mm fallback for mmcv.ops (mmcv-lite, no compiled ops).')
    module.__dict__.update(FALLBACK_OPS)
    module.__all__ = sorted(FALLBACK_OPS)
    module.HERMES_FALLBACK = True
    sys.modules[FALLBACK_MODULE_NAME] = module
    # mmcv.cnn's transformer bricks warn on import that the compiled
    # MultiScaleDeformableAttention is missing; that is the expected state
    # here, and using it raises the clear error above.
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
    import mmcv  # noqa: E402  (attach as attribute, as a real import would)
    mmcv.ops = module
    return True
