"""hermes_mm: semi-supervised multi-task (lesion segmentation + image
classification) learning for ultrasound, as an OpenMMLab plugin.

Importing the package applies the import-time fixes of
:mod:`hermes_mm.compat` (the mmcv-lite fallback ``mmcv.ops``, before
MMSegmentation's models are imported, and the checkpoint allow-list) and
registers every hermes_mm component into MMSegmentation's registries. It
patches no MMEngine/MMCV/MMSeg function or class: configs select
``AtomicCheckpointHook``, ``IgnoreIndexDiceLoss`` and ``LoadImageAsStored``
by name. Configs load it with
``custom_imports=dict(imports=['hermes_mm'], allow_failed_imports=False)``.
"""
from . import compat
from .version import __version__

compat.apply()

from . import (apis, datasets, engine, evaluation, models,  # noqa: E402,F401
               visualization)

__all__ = [
    '__version__', 'apis', 'compat', 'datasets', 'engine', 'evaluation',
    'models', 'visualization'
]
