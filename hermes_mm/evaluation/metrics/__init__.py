from .multi_task_metric import MultiTaskMetric

__all__ = ['MultiTaskMetric']
