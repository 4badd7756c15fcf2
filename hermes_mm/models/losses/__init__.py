from .class_wise_dice_loss import ClassWiseDiceLoss
from .dual_threshold_supcon_loss import (DualThresholdSupConLoss,
                                         dual_threshold_supcon_loss)
from .ignore_index_dice_loss import IgnoreIndexDiceLoss
from .inter_task_consistency_loss import (InterTaskConsistencyLoss,
                                          inter_task_consistency_loss)
from .pixel_contrast_loss import PixelContrastLoss, pixel_contrast_loss

__all__ = [
    'ClassWiseDiceLoss', 'DualThresholdSupConLoss', 'IgnoreIndexDiceLoss',
    'InterTaskConsistencyLoss', 'PixelContrastLoss',
    'dual_threshold_supcon_loss', 'inter_task_consistency_loss',
    'pixel_contrast_loss'
]
