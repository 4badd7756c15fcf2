from .itas_neck import ITASNeck
from .task_features import TaskFeatures
from .task_split_neck import TaskSplitNeck

__all__ = ['ITASNeck', 'TaskFeatures', 'TaskSplitNeck']
