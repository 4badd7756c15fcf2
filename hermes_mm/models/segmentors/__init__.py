from .hermes_segmentor import HermesSegmentor
from .multi_task_segmentor import MultiTaskOutputs, MultiTaskSegmentor
from .semi_base_segmentor import SemiBaseSegmentor

__all__ = [
    'HermesSegmentor', 'MultiTaskOutputs', 'MultiTaskSegmentor',
    'SemiBaseSegmentor'
]
