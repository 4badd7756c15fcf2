from .adaptive_dual_threshold import AdaptiveDualThreshold
from .base_dual_threshold import BaseDualThreshold
from .fixed_dual_threshold import FixedDualThreshold
from .ramped_dual_threshold import RampedDualThreshold

__all__ = [
    'AdaptiveDualThreshold', 'BaseDualThreshold', 'FixedDualThreshold',
    'RampedDualThreshold'
]
