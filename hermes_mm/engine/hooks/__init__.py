from .dual_threshold_pseudo_label_hook import DualThresholdPseudoLabelHook

__all__ = ['DualThresholdPseudoLabelHook']
