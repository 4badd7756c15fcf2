from .cutmix import cutmix_batch, sample_box
from .dual_threshold import (Zones, binary_probs, dual_threshold_zones,
                             zone_ratios)
from .finite_losses import (FiniteLossesMixin, NonFiniteLossError,
                            non_finite_terms)
from .foreach_ema import ForeachExponentialMovingAverage
from .ramp_schedule import RAMP_SHAPES, RampSchedule

__all__ = [
    'FiniteLossesMixin', 'ForeachExponentialMovingAverage',
    'NonFiniteLossError', 'RAMP_SHAPES', 'RampSchedule',
    'Zones', 'binary_probs', 'cutmix_batch', 'dual_threshold_zones',
    'non_finite_terms', 'sample_box', 'zone_ratios'
]
