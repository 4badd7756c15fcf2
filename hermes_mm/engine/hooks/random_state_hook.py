"""Save the model's random stream in checkpoints so ``--resume`` is exact.

MMEngine's resume restores weights, optimizer, schedulers and the message
hub, and replays the data loader up to the checkpoint's iteration, but not
the random number generators: the resumed run continues from the state
left by model construction, not from where the interrupted run was. In
hermes_mm the model draws from torch's generator (dropout, CutMix boxes,
pixel anchors of the contrastive loss), so a resumed run would train on
different draws than an uninterrupted one.

Two streams, two owners:

- torch's generators (CPU, and CUDA when initialised) belong to the model:
  this hook saves them in every checkpoint and restores them right before
  the first resumed iteration;
- numpy's and Python's generators belong to the data pipeline (MMCV
  transforms use ``np.random``): in the main process (``num_workers=0``)
  MMEngine's replay of the skipped batches advances them exactly as the
  interrupted run did, and workers reseed themselves from the config seed,
  so they are left alone (restoring them would rewind the replay).

Distributed runs: every rank has its own torch stream (different ones with
``randomness=dict(diff_rank_seed=True)``), but only rank 0 writes the
checkpoint and ``before_save_checkpoint`` runs on rank 0 only, where no
collective may be called. So on the iterations (or epochs) where a
``CheckpointHook`` is about to save, every rank's state is all-gathered in
``after_train_iter`` / ``after_train_epoch`` (this hook runs before the
checkpoint hook; no hook between them draws from torch's generator in
hermes_mm or MMEngine), and rank 0 saves the list. On resume each rank
restores its own entry, if the world size is unchanged; otherwise nothing
is restored and a warning says so.

With ``randomness=dict(seed=..., deterministic=True)`` a run that is
killed and resumed then ends with bit-identical weights on CPU, on one
process (``tests/reliability/test_kill_resume.py``) and under 2-process
gloo DDP (``tests/distributed/test_dist_resume.py``).

``tools/train.py`` adds this hook to every config that lacks it.
"""
from typing import List, Optional

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from hermes_mm.registry import HOOKS

CHECKPOINT_KEY = 'hermes_random_state'


def local_random_state() -> dict:
    """This process's torch generator states (uint8 tensors)."""
    state = dict(torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_local_random_state(state: dict) -> None:
    """Restore what :func:`local_random_state` returned."""
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            print_log(
                f'RandomStateHook: the checkpoint has {len(cuda)} CUDA '
                f'generator states but {torch.cuda.device_count()} '
                'devices are visible; CUDA generators not restored.',
                logger='current',
                level=30)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save torch's generator states in checkpoints; restore on resume.

    The states are saved as uint8 tensors (weights-only safe) under
    ``checkpoint['hermes_random_state']['ranks']``, one entry per rank.
    They are restored only when training continues at the checkpoint's
    iteration (``--resume``), not when a checkpoint is merely loaded as
    initial weights (``load_from``).
    """

    # Restore before any other hook of the first resumed iteration runs,
    # gather before the checkpoint hook (priority VERY_LOW) saves.
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._gathered: Optional[List[dict]] = None

    # ------------------------------------------------------------ saving
    @staticmethod
    def _checkpoint_due(runner, by_epoch: bool) -> bool:
        """Whether a ``CheckpointHook`` of ``runner`` saves at the end of
        this iteration (``by_epoch=False``) or epoch (its own rule)."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or \
                    hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                regular = hook.every_n_epochs(runner, hook.interval,
                                              hook.save_begin)
                last = hook.is_last_train_epoch(runner)
            else:
                regular = hook.every_n_train_iters(runner, hook.interval,
                                                   hook.save_begin)
                last = hook.is_last_train_iter(runner)
            if regular or (hook.save_last and last):
                return True
        return False

    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        self._gathered = None
        if get_world_size() > 1 and self._checkpoint_due(runner, by_epoch):
            self._gathered = all_gather_object(local_random_state())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Distributed: gather every rank's state before a checkpoint."""
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        """Distributed: the same for epoch-based checkpoints."""
        self._gather_if_due(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the generator states of every rank (rank 0 saves)."""
        ranks = self._gathered
        if ranks is None:
            if get_world_size() > 1:
                # a save this hook could not foresee (e.g. a best
                # checkpoint after validation): no collective possible
                # here, so it holds no states and resumes like MMEngine
                return
            ranks = [local_random_state()]
        checkpoint[CHECKPOINT_KEY] = dict(ranks=ranks)

    # --------------------------------------------------------- restoring
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved states until the first training iteration."""
        state = checkpoint.get(CHECKPOINT_KEY)
        iteration = checkpoint.get('meta', {}).get('iter')
        if state is not None and 'ranks' not in state:
            state = dict(ranks=[state])  # written before per-rank states
        self._pending = None if state is None else dict(
            ranks=state['ranks'], iter=iteration)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Restore this rank's states if this run resumed at the
        checkpoint."""
        pending, self._pending = self._pending, None
        if pending is None or runner.iter != pending['iter']:
            return
        ranks, world_size = pending['ranks'], get_world_size()
        if len(ranks) != world_size:
            print_log(
                f'RandomStateHook: the checkpoint holds the random states '
                f'of {len(ranks)} process(es) but this run has '
                f'{world_size}; random generators are not restored.',
                logger='current',
                level=30)
            return
        set_local_random_state(ranks[get_rank()])
