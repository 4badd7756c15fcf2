from .cutmix import cutmix_batch, sample_box
from .dual_threshold import (Zones, binary_probs, dual_threshold_zones,
                             zone_ratios)
from .ramp_schedule import RAMP_SHAPES, RampSchedule

__all__ = [
    'RAMP_SHAPES', 'RampSchedule', 'Zones', 'binary_probs', 'cutmix_batch',
    'dual_threshold_zones', 'sample_box', 'zone_ratios'
]
