from . import (data_preprocessors, heads, losses, necks,  # noqa: F401
               segmentors, thresholds, utils)

__all__ = [
    'data_preprocessors', 'heads', 'losses', 'necks', 'segmentors',
    'thresholds', 'utils'
]
