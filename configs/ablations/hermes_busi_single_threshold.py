# Ablation: Hermes on BUSI (1/8 labels) with one threshold per task instead
# of two. Only dual -> single changes: the thresholds stay class-wise
# adaptive (same policy, momentum and range), with tau_low = tau_high and a
# zero margin, so there is no ambiguous zone and no ambiguous negative in the
# contrastive losses.
_base_ = '../hermes_busi.py'

model = dict(
    pseudo_labeler=dict(
        seg_threshold=dict(tau_low=0.95, tau_high=0.95, margin=0.0),
        cls_threshold=dict(tau_low=0.9, tau_high=0.9, margin=0.0)))
