from .pixel_projection_head import PixelProjectionHead
from .projection_head import ProjectionHead

__all__ = ['PixelProjectionHead', 'ProjectionHead']
