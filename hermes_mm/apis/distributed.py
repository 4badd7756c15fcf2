"""Distributed training on machines without CUDA (``torchrun`` + gloo).

MMEngine 0.10.7's ``--launcher pytorch`` path assumes CUDA: it calls
``torch.cuda.set_device`` before creating the process group, wraps the
model in DDP with ``device_ids=[LOCAL_RANK]`` (DDP rejects device ids for
CPU modules), and ``torch.nn.SyncBatchNorm`` refuses CPU tensors. On a
machine without CUDA, :func:`setup_cpu_distributed` makes the same config
run under ``torchrun`` with the gloo backend: it creates the process group
itself, asks for a device-less DDP wrapper, and converts SyncBN to BN (with
a warning) plus :class:`~hermes_mm.engine.hooks.SyncNormStatsHook` so BN
statistics, and hence the Hermes teacher, stay identical across ranks.
With CUDA, or without a launcher, nothing changes.
"""
import datetime
import warnings
from typing import Any, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict

from hermes_mm.compat.gloo_teardown import exit_skipping_finalization
# Registers SyncNormStatsHook, which the CPU config asks for.
from hermes_mm.engine.hooks import sync_norm_stats_hook  # noqa: F401

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm')
NORM_STATS_HOOK = 'SyncNormStatsHook'


def revert_sync_bn_cfg(cfg: Any) -> int:
    """Replace every ``type='SyncBN'`` (any scope prefix) in a nested
    config by ``'BN'``, in place.

    Returns:
        int: How many norm configs were changed.
    """
    changed = 0
    if isinstance(cfg, dict):
        norm_type = cfg.get('type')
        if isinstance(norm_type, str) and norm_type.split(
                '.')[-1] in SYNC_BN_TYPES:
            cfg['type'] = 'BN'
            changed += 1
        for value in cfg.values():
            changed += revert_sync_bn_cfg(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            changed += revert_sync_bn_cfg(value)
    return changed


def cpu_distributed_cfg(cfg: Config) -> bool:
    """The config changes for CPU (gloo) DDP, in place (no process group).

    - SyncBN -> BN in ``cfg.model`` and ``cfg.sync_bn`` dropped, with a
      warning; ``SyncNormStatsHook`` added to ``custom_hooks``.
    - ``model_wrapper_cfg``: ``MMDistributedDataParallel`` with
      ``device_ids=None`` (MMEngine's default passes ``[LOCAL_RANK]``).

    Returns:
        bool: Whether the config was changed (a launcher, no CUDA).
    """
    if cfg.get('launcher', 'none') in (None, 'none'):
        return False
    reverted = revert_sync_bn_cfg(cfg.get('model'))
    if cfg.get('sync_bn', None):
        cfg.sync_bn = None
        reverted += 1
    if reverted:
        warnings.warn(
            f'SyncBN needs CUDA (torch.nn.SyncBatchNorm rejects CPU '
            f'tensors); {reverted} SyncBN config(s) were converted to BN for '
            f'this CPU (gloo) run, and {NORM_STATS_HOOK} averages BN '
            'statistics across ranks after every iteration.')
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(
                str(h.get('type', '')).split('.')[-1] == NORM_STATS_HOOK
                for h in hooks):
            hooks.append(dict(type=NORM_STATS_HOOK))
        cfg.custom_hooks = hooks
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        cfg.model_wrapper_cfg = ConfigDict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
    elif str(wrapper.get('type', 'MMDistributedDataParallel')).endswith(
            'DistributedDataParallel'):
        wrapper['device_ids'] = None
    return True


def init_cpu_process_group(cfg: Config) -> None:
    """Create the gloo process group from ``torchrun``'s environment
    (MMEngine's ``init_dist`` would call ``torch.cuda.set_device``)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}) or {})
    dist_cfg['backend'] = 'gloo'
    timeout: Optional[float] = dist_cfg.pop('timeout', None)
    if timeout is not None:
        dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(**dist_cfg)


def setup_cpu_distributed(cfg: Config,
                          cuda_available: Optional[bool] = None) -> bool:
    """Let ``--launcher pytorch`` run on a machine without CUDA.

    Call it on the final config, before ``Runner.from_cfg`` (tools/train.py
    and tools/test.py do). A no-op with CUDA or ``launcher='none'``.

    Args:
        cfg (Config): Config with ``launcher`` set; changed in place.
        cuda_available (bool, optional): Defaults to
            ``torch.cuda.is_available()``.

    Returns:
        bool: Whether the CPU fallback was applied.

    Raises:
        ValueError: A launcher other than 'pytorch' on a machine without
            CUDA (MMEngine's slurm/mpi paths need CUDA).
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    launcher = cfg.get('launcher', 'none')
    if cuda_available or launcher in (None, 'none'):
        return False
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs CUDA on this stack; on CPU use '
            'torchrun (tools/dist_train.sh) with --launcher pytorch')
    cpu_distributed_cfg(cfg)
    init_cpu_process_group(cfg)
    return True


def shutdown_distributed() -> bool:
    """Destroy the default process group, if any, after a barrier.

    MMEngine's Runner creates the process group but never destroys it. The
    barrier first makes every rank wait until all are done (rank 0 may
    still be writing the last checkpoint or metrics file), so no rank tears
    its group down while another still communicates.

    Destroying the group does not by itself prevent gloo's abort at
    interpreter finalization ("terminate called without an active
    exception", SIGABRT; pytorch/pytorch#179291, see
    :mod:`hermes_mm.compat.gloo_teardown`), after which torchrun reports a
    finished run as failed: ``tools/train.py`` and ``tools/test.py`` end
    with :func:`end_distributed_worker`, which calls this and then exits
    without finalization.

    Returns:
        bool: Whether a process group was destroyed.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    return True


def end_distributed_worker() -> None:
    """End a ``tools/`` entry point: in a distributed run, destroy the
    process group and exit the process without interpreter finalization
    (:mod:`hermes_mm.compat.gloo_teardown`, pytorch/pytorch#179291: a
    gloo worker thread can abort the finished rank during finalization);
    otherwise return. Call it last, after every file is written."""
    if shutdown_distributed():
        exit_skipping_finalization(0)


__all__ = [
    'cpu_distributed_cfg', 'end_distributed_worker', 'init_cpu_process_group',
    'revert_sync_bn_cfg', 'setup_cpu_distributed', 'shutdown_distributed'
]
