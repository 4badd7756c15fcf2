"""Dual thresholds that move linearly after a supervised warm-up."""
import torch
from torch import Tensor

from hermes_mm.registry import MODELS
from .base_dual_threshold import BaseDualThreshold, _as_class_vector


@MODELS.register_module()
class RampedDualThreshold(BaseDualThreshold):
    """Thresholds ramped from start to final values after a warm-up.

    With ``r(t) = clip((t - warmup_iters) / ramp_iters, 0, 1)``::

        tau(t) = tau_start + r(t) * (tau_final - tau_start)

    e.g. start strict (few, precise pseudo-labels while the teacher is
    weak) and relax as it improves, or the reverse (curriculum).

    Args:
        num_classes (int): K.
        tau_low (float | sequence): Final lower threshold(s).
        tau_high (float | sequence): Final upper threshold(s).
        start_tau_low (float | sequence): Lower threshold(s) up to the end
            of the warm-up.
        start_tau_high (float | sequence): Upper threshold(s) up to the end
            of the warm-up.
        warmup_iters (int): Iterations before the ramp starts.
        ramp_iters (int): Ramp length; 0 jumps to the final values.
    """

    def __init__(self,
                 num_classes: int,
                 tau_low=0.7,
                 tau_high=0.95,
                 start_tau_low=0.9,
                 start_tau_high=0.99,
                 warmup_iters: int = 0,
                 ramp_iters: int = 1000) -> None:
        super().__init__(num_classes, start_tau_low, start_tau_high)
        if warmup_iters < 0 or ramp_iters < 0:
            raise ValueError('warmup_iters and ramp_iters must be >= 0, got '
                             f'{warmup_iters} and {ramp_iters}')
        final_low = _as_class_vector(tau_low, num_classes, 'tau_low')
        final_high = _as_class_vector(tau_high, num_classes, 'tau_high')
        self.check_thresholds(final_low, final_high)
        self.register_buffer('start_low', self.tau_low.clone())
        self.register_buffer('start_high', self.tau_high.clone())
        self.register_buffer('final_low', final_low)
        self.register_buffer('final_high', final_high)
        self.warmup_iters = warmup_iters
        self.ramp_iters = ramp_iters
        # The buffers hold the thresholds of the iteration about to run;
        # iteration 0 already has its final values when there is neither a
        # warm-up nor a ramp.
        self._set_progress(self.progress(0))

    def progress(self, iteration: int) -> float:
        """``r(t)`` in [0, 1]."""
        if iteration < self.warmup_iters:
            return 0.0
        if self.ramp_iters == 0:
            return 1.0
        return min(1.0, (iteration - self.warmup_iters) / self.ramp_iters)

    @torch.no_grad()
    def update(self, confidence_sum: Tensor, count: Tensor,
               iteration: int) -> None:
        """Set the thresholds for the next iteration, ``iteration + 1``."""
        self._set_progress(self.progress(iteration + 1))

    @torch.no_grad()
    def _set_progress(self, r: float) -> None:
        """Set the thresholds to ``tau_start + r (tau_final - tau_start)``."""
        self.tau_low.copy_(self.start_low + r *
                           (self.final_low - self.start_low))
        self.tau_high.copy_(self.start_high + r *
                            (self.final_high - self.start_high))
