"""When a teacher/student model updates its teacher and thresholds, and
what it logs.

Like MMEngine's ``EMAHook``, this hook only decides *when*; the model does
the math (``SemiBaseSegmentor.update_teacher``, and
``DualThresholdPseudoLabeler.update`` for a model with a
``pseudo_labeler``). Registered as ``TeacherThresholdUpdateHook`` and, for
configs written before 2026-12, ``DualThresholdPseudoLabelHook``.
"""
from collections import deque
from typing import Deque, Dict, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from hermes_mm.registry import HOOKS

CHECKPOINT_KEY = 'hermes_pseudo_label_hook'


@HOOKS.register_module()
class TeacherThresholdUpdateHook(Hook):
    """Drive a teacher/student model through training.

    Every training iteration it

    - tells the model the iteration before the step (loss ramp-ups);
    - after the optimiser step, moves the EMA teacher towards the student
      and updates the dual thresholds from the teacher's confidence
      statistics of that step;
    - logs the thresholds the step ran with
      (``train/thr.<task>.<low|high>.<class>``) and,
      when the unlabelled set has hidden annotations, the quality of the
      reliable pseudo-labels over the last ``precision_window`` iterations:
      pooled precision (``train/pl.<seg|cls>.precision``), lesion-pixel
      precision and recall (``train/pl.seg.lesion.<precision|recall>``) and
      per image class (``train/pl.cls.<class>.<precision|recall>``), each a
      ratio of the counts summed over the window (see
      ``DualThresholdPseudoLabeler.diagnostics``); zone ratios come with
      the losses;
    - warns when a contrastive term has had nothing to contrast for
      ``no_pair_warning_iters`` iterations.

    Thresholds, teacher, queues and prototypes are model buffers, so they
    are saved in checkpoints; this hook saves its precision window too, so
    ``--resume`` continues exactly.

    Args:
        precision_window (int): Iterations over which the pseudo-label
            precision and recall counts are accumulated.
        no_pair_warning_iters (int): Warn after this many consecutive
            iterations without a contrastive pair (0 disables).
        log_thresholds (bool): Log the thresholds every iteration.
    """

    priority = 'NORMAL'

    def __init__(self,
                 precision_window: int = 50,
                 no_pair_warning_iters: int = 100,
                 log_thresholds: bool = True) -> None:
        if precision_window < 1:
            raise ValueError(
                f'precision_window must be >= 1, got {precision_window}')
        if no_pair_warning_iters < 0:
            raise ValueError('no_pair_warning_iters must be >= 0, got '
                             f'{no_pair_warning_iters}')
        self.precision_window = precision_window
        self.no_pair_warning_iters = no_pair_warning_iters
        self.log_thresholds = log_thresholds
        self.windows: Dict[str, Deque[Tuple[float, float]]] = {}
        self._warned: Dict[str, bool] = {}

    @staticmethod
    def _model(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        for attr in ('set_iteration', 'update_teacher'):
            if not hasattr(model, attr):
                raise TypeError(
                    'TeacherThresholdUpdateHook needs a teacher/student '
                    f'model such as HermesSegmentor (no `{attr}` on '
                    f'{type(model).__name__})')
        return model

    def before_train(self, runner) -> None:
        """Check the model early, before the first iteration."""
        self._model(runner)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Set the iteration used by the loss ramp-ups."""
        self._model(runner).set_iteration(runner.iter)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """EMA teacher step, threshold update, logging."""
        model = self._model(runner)
        message_hub = runner.message_hub
        labeler = getattr(model, 'pseudo_labeler', None)
        if self.log_thresholds and labeler is not None:
            # The thresholds this iteration ran with, logged beside the zone
            # ratios they produced; then updated for the next iteration.
            for name, value in labeler.threshold_scalars().items():
                message_hub.update_scalar(f'train/{name}', value)
        model.update_teacher(runner.iter)
        if labeler is None:
            return
        labeler.update(runner.iter)
        for key, counts in labeler.pop_counts().items():
            name = self.ratio_name(key)
            window = self.windows.setdefault(
                name, deque(maxlen=self.precision_window))
            window.append(tuple(counts))
            numerator = sum(c for c, _ in window)
            denominator = sum(t for _, t in window)
            if denominator > 0:
                message_hub.update_scalar(f'train/pl.{name}',
                                          numerator / denominator)
        self.check_contrastive_pairs(runner, model)

    @staticmethod
    def ratio_name(key: str) -> str:
        """Logged name of a pseudo-label count: the key itself
        (e.g. ``seg.lesion.recall``); a bare task name (``seg``, the form
        before per-class diagnostics, also in older checkpoints) means its
        pooled precision."""
        return key if '.' in key else f'{key}.precision'

    def check_contrastive_pairs(self, runner, model) -> None:
        """Warn once per episode when a contrastive loss is starved."""
        if not self.no_pair_warning_iters:
            return
        for name in ('img_contrast', 'pix_contrast'):
            counter = getattr(getattr(model, name, None),
                              'steps_without_pairs', None)
            if counter is None:
                continue
            starved = int(counter) >= self.no_pair_warning_iters
            if starved and not self._warned.get(name, False):
                print_log(
                    f'{name} has had nothing to contrast for {int(counter)} '
                    f'iterations (at iter {runner.iter + 1}): no anchor with '
                    'a positive. Lower the thresholds, enlarge the queue or '
                    'the batch, or check the labelled:unlabelled ratio.',
                    logger='current',
                    level=30)
            self._warned[name] = starved

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the precision windows (plain floats: weights-only safe)."""
        checkpoint[CHECKPOINT_KEY] = dict(
            windows={
                task: [list(item) for item in window]
                for task, window in self.windows.items()
            })

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the precision windows."""
        state = checkpoint.get(CHECKPOINT_KEY)
        if not state:
            return
        self.windows = {
            self.ratio_name(key): deque((tuple(item) for item in items),
                                        maxlen=self.precision_window)
            for key, items in state['windows'].items()
        }


# The name configs used before 2026-12.
HOOKS.register_module(
    name='DualThresholdPseudoLabelHook', module=TeacherThresholdUpdateHook)
DualThresholdPseudoLabelHook = TeacherThresholdUpdateHook
