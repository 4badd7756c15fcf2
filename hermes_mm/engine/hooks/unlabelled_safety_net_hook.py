"""A validation-gated safety net for the unlabelled losses.

Issue 20, item 5: unlabelled data must not drag a semi-supervised model
below its supervised level. Per-step guards (``LesionShareGate``,
``DistributionAlignment``) act on what the teacher predicts; this hook acts
on what validation measures, the only signal that sees a harm the teacher
itself cannot (a confident but wrong teacher, or a lock-in no per-step rule
anticipated).
"""
import logging
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from hermes_mm.registry import HOOKS

CHECKPOINT_KEY = 'hermes_safety_net'


@HOOKS.register_module()
class UnlabelledSafetyNetHook(Hook):
    """Back off the unlabelled losses, and undo their damage, whenever
    validation falls below the best score seen.

    After every validation during training the hook reads a *score*, the
    mean of the validation metrics ``score_keys`` (higher is better).

    - The first validation, and every one whose score is at least the best
      so far, sets the reference: the best score and, with
      ``restore_best``, a CPU copy of the whole model state (student,
      teacher, thresholds, queues, gate statistics).
    - A validation whose score is more than ``tolerance`` below the best
      multiplies the model's ``unlabelled_scale`` (the factor on every
      unlabelled term group: pseudo-label, contrast, consistency; see
      ``HermesSegmentor.set_unlabelled_scale``) by ``decay`` and, with
      ``restore_best``, loads the best state back into the model. The
      iteration (learning rate, loss ramps) and the optimiser state go on.
      If that validation followed the last training step, the last
      checkpoint (written by ``CheckpointHook`` just before it) is written
      again, so the saved final model is the restored one (and its safety
      state the new one).

    What this guarantees: validations during the supervised warm-up (every
    unlabelled weight 0) count, so the reference is at least the best
    validated score of the supervised model; a drop below it by more than
    ``tolerance`` is undone at the next validation, and each drop halves
    (``decay=0.5``) what the unlabelled losses may do afterwards, so
    repeated harm drives the run towards supervised training from its best
    state. It is a guarantee on the validation set, with that set's noise:
    report the model on a separate test set, as with ``save_best``. The
    scale never rises again within a run.

    The state (best score, scale, number of backoffs and, with
    ``restore_best``, the best model state, which doubles the checkpoint
    size) is saved in checkpoints, so ``--resume`` continues exactly; a
    checkpoint loaded with ``load_from`` (training starts at iteration 0)
    starts a fresh safety net.

    Args:
        score_keys (Sequence[str]): Validation metric names averaged into
            the score, e.g. ``('teacher/seg/dice_lesion',
            'teacher/cls/accuracy')`` for ``MultiTaskMetric`` on a model
            validated with its teacher.
        tolerance (float): How far (in the metrics' units) a score may fall
            below the best before the hook acts. Validation sets are small:
            one image of 40 moves accuracy by 2.5 points.
        decay (float): Factor in [0, 1) on the unlabelled scale per
            backoff (0: the first drop switches the unlabelled losses off).
        restore_best (bool): Load the best state back on a drop.
    """

    priority = 'NORMAL'

    def __init__(self,
                 score_keys: Sequence[str] = ('teacher/seg/dice_lesion',
                                              'teacher/cls/accuracy'),
                 tolerance: float = 2.0,
                 decay: float = 0.5,
                 restore_best: bool = True) -> None:
        if isinstance(score_keys, str):
            score_keys = (score_keys, )
        if not score_keys:
            raise ValueError('score_keys must name at least one validation '
                             'metric')
        if tolerance < 0:
            raise ValueError(f'tolerance must be >= 0, got {tolerance}')
        if not 0 <= decay < 1:
            raise ValueError(f'decay must be in [0, 1), got {decay}')
        self.score_keys = tuple(score_keys)
        self.tolerance = float(tolerance)
        self.decay = float(decay)
        self.restore_best = bool(restore_best)
        self.best_score: Optional[float] = None
        self.best_iter: Optional[int] = None
        self.backoffs = 0
        self.best_state: Optional[Dict] = None
        self._loaded: Optional[dict] = None
        self._training = False

    @property
    def scale(self) -> float:
        """The factor on the unlabelled weights: ``decay ** backoffs``."""
        return self.decay**self.backoffs

    @staticmethod
    def _model(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        if not hasattr(model, 'set_unlabelled_scale'):
            raise TypeError(
                'UnlabelledSafetyNetHook needs a semi-supervised model with '
                '`set_unlabelled_scale` such as HermesSegmentor (got '
                f'{type(model).__name__})')
        return model

    def before_train(self, runner) -> None:
        """Check the model and that the run validates; take over a resumed
        state (not a ``load_from`` one: that run starts at iteration 0)."""
        model = self._model(runner)
        if runner.val_loop is None:
            raise ValueError(
                'UnlabelledSafetyNetHook acts on validation scores, but this '
                'run has no validation loop: set val_dataloader, '
                'val_evaluator and val_cfg (and train_cfg.val_interval), or '
                'remove the hook from custom_hooks')
        if self._loaded is not None and runner.iter > 0:
            self.best_score = self._loaded['best_score']
            self.best_iter = self._loaded['best_iter']
            self.backoffs = self._loaded['backoffs']
            self.best_state = self._loaded.get('best_state')
        self._loaded = None
        model.set_unlabelled_scale(self.scale)
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def score(self, metrics: Dict[str, float]) -> float:
        """Mean of ``score_keys``; a KeyError naming the missing keys and
        the available ones."""
        missing = [key for key in self.score_keys if key not in metrics]
        if missing:
            raise KeyError(
                f'UnlabelledSafetyNetHook.score_keys {missing} are not among '
                f'the validation metrics {sorted(metrics)}')
        return float(np.mean([float(metrics[key])
                              for key in self.score_keys]))

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        """Update the reference, or back off and restore."""
        if not self._training or not metrics:
            return
        model = self._model(runner)
        score = self.score(metrics)
        level = logging.INFO
        if self.best_score is None or score >= self.best_score:
            self.best_score, self.best_iter = score, runner.iter
            if self.restore_best:
                self.best_state = {
                    key: value.detach().to('cpu', copy=True)
                    for key, value in model.state_dict().items()
                }
            decision = 'the new best'
        elif score < self.best_score - self.tolerance:
            self.backoffs += 1
            model.set_unlabelled_scale(self.scale)
            decision = f'more than {self.tolerance:g} below the best'
            if self.restore_best and self.best_state is not None:
                model.load_state_dict(self.best_state)
                decision += f'; model restored to iter {self.best_iter}'
            if self._after_last_step(runner):
                self._resave_last_checkpoint(runner)
            level = logging.WARNING
        else:
            decision = f'within {self.tolerance:g} of the best'
        print_log(
            f'UnlabelledSafetyNetHook: score {score:.2f} at iter '
            f'{runner.iter} is {decision} (best {self.best_score:.2f} at '
            f'iter {self.best_iter}); unlabelled scale {self.scale:g}',
            logger='current',
            level=level)
        runner.message_hub.update_scalar('train/safety.unlabelled_scale',
                                         self.scale)

    @staticmethod
    def _after_last_step(runner) -> bool:
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            return runner.epoch >= loop.max_epochs
        return runner.iter >= loop.max_iters

    @staticmethod
    def _resave_last_checkpoint(runner) -> None:
        """Write the checkpoint of the step just finished again, through
        the CheckpointHook that wrote it (the same backend, file name and
        meta as its ``_save_checkpoint``, MMEngine 0.10.x), when it did."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or not hook.last_ckpt:
                continue
            step = runner.epoch if hook.by_epoch else runner.iter
            if osp.basename(hook.last_ckpt) != hook.filename_tmpl.format(
                    step):
                continue
            hook._save_checkpoint_with_step(
                runner, step, meta=dict(epoch=runner.epoch, iter=runner.iter))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the state (floats and a state dict: weights-only safe;
        ``scale`` is derived, saved for whoever reads the checkpoint)."""
        checkpoint[CHECKPOINT_KEY] = dict(
            scale=self.scale,
            best_score=self.best_score,
            best_iter=self.best_iter,
            backoffs=self.backoffs,
            best_state=self.best_state)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state; :meth:`before_train` takes it over if the
        run resumes (iteration > 0)."""
        self._loaded = checkpoint.get(CHECKPOINT_KEY)
