from .atomic_checkpoint_hook import AtomicCheckpointHook
from .hermes_visualization_hook import HermesVisualizationHook
from .random_state_hook import RandomStateHook
from .sync_norm_stats_hook import SyncNormStatsHook
from .teacher_threshold_update_hook import (DualThresholdPseudoLabelHook,
                                            TeacherThresholdUpdateHook)
from .unlabelled_safety_net_hook import UnlabelledSafetyNetHook

__all__ = [
    'AtomicCheckpointHook', 'DualThresholdPseudoLabelHook',
    'HermesVisualizationHook', 'RandomStateHook', 'SyncNormStatsHook',
    'TeacherThresholdUpdateHook', 'UnlabelledSafetyNetHook'
]
