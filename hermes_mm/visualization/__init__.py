from .drawing import DEFAULT_ZONE_PALETTE, ZONES, class_text, zone_map
from .hermes_visualizer import HermesVisualizer

__all__ = [
    'DEFAULT_ZONE_PALETTE', 'HermesVisualizer', 'ZONES', 'class_text',
    'zone_map'
]
