from .adaptive_dual_threshold import AdaptiveDualThreshold
from .base_dual_threshold import BaseDualThreshold
from .class_balanced_dual_threshold import ClassBalancedDualThreshold
from .distribution_alignment import DistributionAlignment
from .fixed_dual_threshold import FixedDualThreshold
from .pseudo_labeler import DualThresholdPseudoLabeler, PseudoLabels
from .ramped_dual_threshold import RampedDualThreshold
from .zones import (Zones, confidence_histogram, confidence_stats,
                    dual_threshold_zones, flatten_pixels)

__all__ = [
    'AdaptiveDualThreshold', 'BaseDualThreshold',
    'ClassBalancedDualThreshold', 'DistributionAlignment',
    'DualThresholdPseudoLabeler', 'FixedDualThreshold', 'PseudoLabels',
    'RampedDualThreshold', 'Zones', 'confidence_histogram',
    'confidence_stats', 'dual_threshold_zones', 'flatten_pixels'
]
