# Mean-teacher baseline: the same network and data as Hermes, with an EMA
# teacher and single-threshold pseudo-labels (weak -> strong views) only: no
# ITAS, no dual thresholds, no contrastive or consistency loss, no CutMix.
_base_ = '../hermes_busi.py'

model = dict(
    segmentor=dict(
        task_neck=dict(_delete_=True, type='TaskSplitNeck', cls_in_index=-1)),
    seg_threshold=dict(
        _delete_=True, type='FixedDualThreshold', tau_low=0.95,
        tau_high=0.95),
    cls_threshold=dict(
        _delete_=True, type='FixedDualThreshold', tau_low=0.9, tau_high=0.9),
    img_projector=None,
    img_contrast_loss=None,
    pix_projector=None,
    pix_contrast_loss=None,
    consistency_loss=None,
    cutmix_prob=0.0)
