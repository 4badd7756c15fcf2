from .batch_norm_stats import frozen_bn_running_stats
from .cutmix import cutmix_batch, sample_box
from .finite_losses import (FiniteLossesMixin, NonFiniteLossError,
                            non_finite_terms)
from .teacher_ema import ForeachExponentialMovingAverage, step_teacher
from .lesion_share_gate import LesionShareGate, lesion_share_gate
from .lesion_decision import check_lesion_classes, mask_decides_lesion
from .ramp_schedule import RAMP_SHAPES, RampSchedule
from .small_components import (check_min_area, remove_small_components,
                               test_cfg_key)

__all__ = [
    'FiniteLossesMixin', 'ForeachExponentialMovingAverage',
    'LesionShareGate', 'lesion_share_gate',
    'NonFiniteLossError', 'RAMP_SHAPES', 'RampSchedule',
    'check_lesion_classes', 'check_min_area',
    'cutmix_batch',
    'frozen_bn_running_stats',
    'mask_decides_lesion',
    'non_finite_terms',
    'remove_small_components',
    'sample_box', 'step_teacher', 'test_cfg_key'
]
