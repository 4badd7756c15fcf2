from .hermes_segmentor import HermesSegmentor
from .multi_task_segmentor import MultiTaskOutputs, MultiTaskSegmentor

__all__ = ['HermesSegmentor', 'MultiTaskOutputs', 'MultiTaskSegmentor']
