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

With ``randomness=dict(seed=..., deterministic=True)`` a run that is
killed and resumed then ends with bit-identical weights on CPU
(``tests/reliability/test_kill_resume.py``). Distributed runs are not
restored: each rank has its own stream and only rank 0 writes the
checkpoint.

``tools/train.py`` adds this hook to every config that lacks it.
"""
from typing import Optional

import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from hermes_mm.registry import HOOKS

CHECKPOINT_KEY = 'hermes_random_state'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save torch's generator states in checkpoints; restore on resume.

    The states are saved as uint8 tensors (weights-only safe) under
    ``checkpoint['hermes_random_state']``. They are restored only when
    training continues at the checkpoint's iteration (``--resume``), not
    when a checkpoint is merely loaded as initial weights (``load_from``).
    """

    # Restore before any other hook of the first resumed iteration runs.
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the torch generator states."""
        state = dict(torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint[CHECKPOINT_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved states until the first training iteration."""
        state = checkpoint.get(CHECKPOINT_KEY)
        iteration = checkpoint.get('meta', {}).get('iter')
        self._pending = None if state is None else dict(
            state, iter=iteration)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Restore the states if this run resumed at the checkpoint."""
        pending, self._pending = self._pending, None
        if pending is None or runner.iter != pending['iter']:
            return
        if get_world_size() > 1:
            print_log(
                'RandomStateHook: distributed run, random generators are '
                'not restored (per-rank streams are not saved).',
                logger='current')
            return
        torch.set_rng_state(pending['torch'])
        cuda = pending.get('cuda')
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
