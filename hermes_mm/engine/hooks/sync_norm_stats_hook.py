"""Average BatchNorm running statistics across ranks during training.

With plain BN under DDP every rank updates ``running_mean``/``running_var``
from its own images, so ranks drift apart; a Hermes teacher built with
``update_buffers=True`` then averages different statistics on each rank and
the teachers differ. SyncBN avoids this on GPUs; where it cannot run (CPU /
gloo, see :func:`hermes_mm.apis.setup_cpu_distributed`) this hook averages
the statistics after each step instead. MMEngine's ``SyncBuffersHook``
averages *every* buffer once per epoch, which would also mix Hermes'
per-rank contrastive queues and prototypes; this hook touches only
BatchNorm statistics.
"""
from typing import List, Optional

from mmengine.dist import all_reduce_params, get_world_size
from mmengine.hooks import Hook
from torch import Tensor
from torch.nn import Module
from torch.nn.modules.batchnorm import _BatchNorm

from hermes_mm.registry import HOOKS


def norm_running_stats(model: Module) -> List[Tensor]:
    """``running_mean`` and ``running_var`` of every BatchNorm in
    ``model`` (``num_batches_tracked`` is the same on every rank)."""
    stats = []
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            stats.extend(s for s in (module.running_mean, module.running_var)
                         if s is not None)
    return stats


@HOOKS.register_module()
class SyncNormStatsHook(Hook):
    """All-reduce (mean) BatchNorm running statistics every ``interval``
    training iterations; a no-op on one process.

    Its priority (``ABOVE_NORMAL``) runs it before
    ``DualThresholdPseudoLabelHook`` moves the teacher, so the teacher
    averages statistics that are equal on every rank. The mean of per-rank
    variances is not SyncBN's global variance (it leaves out the spread of
    the rank means); it keeps ranks identical, which is what DDP needs.

    Args:
        interval (int): Training iterations between synchronisations.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Average the statistics when due."""
        if get_world_size() < 2 or not self.every_n_train_iters(
                runner, self.interval):
            return
        stats = norm_running_stats(runner.model)
        if stats:
            all_reduce_params(stats, op='mean')


__all__ = ['SyncNormStatsHook', 'norm_running_stats']
