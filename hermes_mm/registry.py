"""Registries used by hermes_mm.

hermes_mm registers into MMSegmentation's registries (scope ``mmseg``) so a
config with ``default_scope='mmseg'`` can mix MMSeg components, hermes_mm
components and, through the ``mmpretrain.`` prefix, MMPretrain ones.
"""
from mmseg.registry import (DATA_SAMPLERS, DATASETS, HOOKS, INFERENCERS, LOOPS,
                            METRICS, MODELS, TASK_UTILS, TRANSFORMS,
                            VISUALIZERS)

__all__ = [
    'DATA_SAMPLERS', 'DATASETS', 'HOOKS', 'INFERENCERS', 'LOOPS', 'METRICS',
    'MODELS', 'TASK_UTILS', 'TRANSFORMS', 'VISUALIZERS'
]
