from . import (data_preprocessors, heads, losses, necks,  # noqa: F401
               pseudo_labels, segmentors, utils)

__all__ = [
    'data_preprocessors', 'heads', 'losses', 'necks', 'pseudo_labels',
    'segmentors', 'utils'
]
