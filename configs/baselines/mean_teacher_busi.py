# Mean-teacher baseline: the same network and data as Hermes, with an EMA
# teacher and single-threshold pseudo-labels (weak -> strong views) only: no
# ITAS, no dual thresholds, no contrastive or consistency loss, no CutMix,
# no lesion-share gate.
_base_ = '../hermes_busi.py'

model = dict(
    segmentor=dict(
        task_neck=dict(_delete_=True, type='TaskSplitNeck', cls_in_index=-1)),
    pseudo_labeler=dict(
        seg_threshold=dict(
            _delete_=True, type='FixedDualThreshold', tau_low=0.95,
            tau_high=0.95),
        cls_threshold=dict(
            _delete_=True, type='FixedDualThreshold', tau_low=0.9,
            tau_high=0.9)),
    img_contrast=None,
    pix_contrast=None,
    consistency=None,
    lesion_share_gate=None,
    cutmix_prob=0.0)
