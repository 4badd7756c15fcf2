# Hermes on BUSI (1/8 labels) with class-balanced pixel thresholds (see
# configs/demo/variants/hermes_synthetic_class_balanced.py).
#   python tools/train.py configs/variants/hermes_busi_class_balanced.py
_base_ = '../hermes_busi.py'

model = dict(
    pseudo_labeler=dict(
        seg_threshold=dict(
            type='ClassBalancedDualThreshold', min_high=0.6, ratio=1.0,
            histogram_bins=50)))
