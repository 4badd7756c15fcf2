from .atomic_checkpoint_hook import AtomicCheckpointHook
from .dual_threshold_pseudo_label_hook import DualThresholdPseudoLabelHook
from .hermes_visualization_hook import HermesVisualizationHook
from .random_state_hook import RandomStateHook
from .sync_norm_stats_hook import SyncNormStatsHook

__all__ = [
    'AtomicCheckpointHook', 'DualThresholdPseudoLabelHook',
    'HermesVisualizationHook', 'RandomStateHook', 'SyncNormStatsHook'
]
