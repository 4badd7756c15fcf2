from .image_contrast_head import ImageContrastHead
from .inter_task_consistency_head import InterTaskConsistencyHead
from .pixel_contrast_head import PixelContrastHead
from .pixel_projection_head import PixelProjectionHead
from .projection_head import ProjectionHead

__all__ = [
    'ImageContrastHead', 'InterTaskConsistencyHead', 'PixelContrastHead',
    'PixelProjectionHead', 'ProjectionHead'
]
