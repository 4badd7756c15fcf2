"""Stop training on a non-finite loss before it reaches the weights.

A NaN or Inf loss that is back-propagated turns every weight it touches
into NaN, and the next checkpoint then saves a dead model over the last
good one (``max_keep_ckpts``). MMEngine sums the loss dict in
``BaseModel.parse_losses`` and the optimizer wrapper runs backward and the
step right after, so checking there is the last moment the weights are
still intact. :class:`FiniteLossesMixin` does that check and raises
:class:`NonFiniteLossError` naming the iteration and the loss terms.
"""
from typing import Dict, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import MessageHub
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """A loss term was NaN or Inf; raised before the backward pass.

    Attributes:
        iteration (int, optional): 1-based iteration, as in the training
            log (``Iter(train) [5/...]``); None if unknown.
        terms (dict[str, float]): The non-finite loss terms and their values
            (empty when only another rank saw one).
    """

    def __init__(self, iteration: Optional[int],
                 terms: Dict[str, float]) -> None:
        self.iteration = iteration
        self.terms = dict(terms)
        where = (f'at iteration {iteration} (1-based, as in the training '
                 f'log)' if iteration is not None else
                 'at an unknown iteration')
        if terms:
            what = ', '.join(f'{k}={v}' for k, v in terms.items())
        else:
            what = 'on another rank (this rank\'s losses are finite)'
        super().__init__(
            f'Non-finite loss {where}: {what}. Training stopped before the '
            f'backward pass and optimizer step, so this batch did not change '
            f'the weights and the checkpoints already in work_dir are kept. '
            f'Resume from the last one with --resume after fixing the cause '
            f'(learning rate, loss weights, or bad data: run '
            f'tools/check_dataset.py).')


def current_iteration() -> Optional[int]:
    """1-based index of the running training iteration, or None.

    MMEngine's ``RuntimeInfoHook`` stores the 0-based ``runner.iter`` of the
    current iteration in the message hub before every step.
    """
    iteration = MessageHub.get_current_instance().get_info('iter')
    return None if iteration is None else int(iteration) + 1


def non_finite_terms(log_vars: Dict[str, Tensor]) -> Dict[str, float]:
    """The entries of ``log_vars`` that MMEngine sums and are NaN/Inf.

    Only keys containing ``'loss'`` are checked (diagnostics may be NaN by
    design). The total ``'loss'`` is reported only if every term is finite
    (an overflow of the sum).

    Args:
        log_vars (dict[str, Tensor]): Scalar tensors from ``parse_losses``.

    Returns:
        dict[str, float]: Name -> value of each non-finite term, in order.
    """
    names = [k for k, v in log_vars.items()
             if 'loss' in k and isinstance(v, Tensor)]
    if not names:
        return {}
    values = torch.stack([log_vars[k].detach().float() for k in names])
    finite = torch.isfinite(values)
    if bool(finite.all()):  # one device sync per step
        return {}
    bad = {k: float(v) for k, v, ok in
           zip(names, values.tolist(), finite.tolist()) if not ok}
    terms = {k: v for k, v in bad.items() if k != 'loss'}
    return terms or bad


class FiniteLossesMixin:
    """``parse_losses`` that raises :class:`NonFiniteLossError` on NaN/Inf.

    Put it first among the bases of a model
    (``class MySegmentor(FiniteLossesMixin, EncoderDecoder)``). The losses
    are summed as usual, then checked before the optimizer wrapper runs
    backward and the step. In distributed training the verdict is
    all-reduced, so every rank stops together instead of the others
    waiting forever in the gradient all-reduce.
    """

    def parse_losses(
            self, losses: Dict[str, Tensor]
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Sum the losses (MMEngine) and check that they are finite.

        Raises:
            NonFiniteLossError: A loss term is NaN or Inf, on this rank or
                on another one.
        """
        loss, log_vars = super().parse_losses(losses)
        terms = non_finite_terms(log_vars)
        stop = bool(terms)
        if get_world_size() > 1:
            flag = torch.tensor(float(stop), device=loss.device)
            all_reduce(flag, op='max')
            stop = bool(flag.item() > 0)
        if stop:
            raise NonFiniteLossError(current_iteration(), terms)
        return loss, log_vars


__all__ = [
    'FiniteLossesMixin', 'NonFiniteLossError', 'current_iteration',
    'non_finite_terms'
]
