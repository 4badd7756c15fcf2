"""Loss-weight ramp-ups for semi-supervised terms.

Unsupervised terms are switched on gradually so that early, noisy
pseudo-labels do not dominate: ``w(t) = value * shape((t - start) /
length)`` with ``shape`` clipped to [0, 1]. The sigmoid shape
``exp(-5 (1 - x)^2)`` is the one of Laine & Aila (2017,
https://arxiv.org/abs/1610.02242) and Mean Teacher
(https://arxiv.org/abs/1703.01780).
"""
import math
from typing import Callable, Dict

from hermes_mm.registry import TASK_UTILS

SIGMOID_RAMP_SHARPNESS = 5.0  # exp(-5 (1 - x)^2), Laine & Aila 2017


def linear_shape(x: float) -> float:
    """``x``."""
    return x


def sigmoid_shape(x: float) -> float:
    """``exp(-5 (1 - x)^2)``; reaches 1 at x = 1."""
    return math.exp(-SIGMOID_RAMP_SHARPNESS * (1.0 - x)**2)


def cosine_shape(x: float) -> float:
    """``(1 - cos(pi x)) / 2``."""
    return 0.5 * (1.0 - math.cos(math.pi * x))


def step_shape(x: float) -> float:
    """0 before ``start``, 1 from ``start`` on (``length`` ignored)."""
    return 1.0


RAMP_SHAPES: Dict[str, Callable[[float], float]] = dict(
    linear=linear_shape,
    sigmoid=sigmoid_shape,
    cosine=cosine_shape,
    step=step_shape)


@TASK_UTILS.register_module()
class RampSchedule:
    """A loss weight that ramps from 0 to ``value``.

    ``w(t) = 0`` for ``t < start``; ``value * shape((t - start) / length)``
    while ramping; ``value`` from ``start + length`` on.

    Args:
        value (float): Final weight. 0 switches the term off.
        start (int): Iteration at which the ramp starts (e.g. the end of a
            supervised warm-up).
        length (int): Ramp length in iterations; 0 means a step at
            ``start``.
        shape (str): One of :data:`RAMP_SHAPES` ('linear', 'sigmoid',
            'cosine', 'step').
    """

    def __init__(self,
                 value: float = 1.0,
                 start: int = 0,
                 length: int = 0,
                 shape: str = 'sigmoid') -> None:
        if value < 0:
            raise ValueError(f'RampSchedule value must be >= 0, got {value}')
        if start < 0 or length < 0:
            raise ValueError('RampSchedule start and length must be >= 0, '
                             f'got start={start}, length={length}')
        if shape not in RAMP_SHAPES:
            raise ValueError(f'RampSchedule shape must be one of '
                             f'{sorted(RAMP_SHAPES)}, got {shape!r}')
        self.value = float(value)
        self.start = int(start)
        self.length = int(length)
        self.shape = shape
        self._shape_fn = RAMP_SHAPES[shape]

    def __call__(self, iteration: int) -> float:
        """The weight at (0-based) ``iteration``."""
        if self.value == 0 or iteration < self.start:
            return 0.0
        if self.length == 0 or iteration >= self.start + self.length:
            return self.value
        return self.value * self._shape_fn(
            (iteration - self.start) / self.length)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(value={self.value}, '
                f'start={self.start}, length={self.length}, '
                f'shape={self.shape!r})')
