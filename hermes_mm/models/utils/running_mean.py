"""One running-mean step for statistics kept as module buffers."""
import torch
from torch import Tensor

__all__ = ['update_running_mean_']


@torch.no_grad()
def update_running_mean_(buffer: Tensor, value: Tensor, momentum: float,
                         first: bool) -> Tensor:
    """``buffer = momentum * buffer + (1 - momentum) * value`` in place; the
    first update (``first``) takes ``value`` as it is.

    Used by the statistics that guard the pseudo-labels
    (``LesionShareGate``, ``DistributionAlignment``), whose buffers are in
    checkpoints so that ``--resume`` continues with the same state.
    """
    value = value.to(buffer.dtype)
    if first:
        return buffer.copy_(value)
    return buffer.mul_(momentum).add_((1 - momentum) * value)
