# Ablation: Hermes on BUSI (1/8 labels) with one threshold per task (tau_low = tau_high): no ambiguous
# zone, so no ambiguous negatives in the contrastive losses.
_base_ = '../hermes_busi.py'

model = dict(
    seg_threshold=dict(
        _delete_=True, type='FixedDualThreshold', tau_low=0.95,
        tau_high=0.95),
    cls_threshold=dict(
        _delete_=True, type='FixedDualThreshold', tau_low=0.9, tau_high=0.9))
