# Hermes on the synthetic demo data with class-balanced pixel thresholds
# (issue 20; opt-in until measured on several data styles): the adaptive
# rule, then the lesion's upper threshold is lowered (not below 0.6) until
# the reliable lesion pseudo-labels hold the labelled lesion share
# (ClassBalancedDualThreshold; docs/method.md section 3).
#   python tools/train.py configs/demo/variants/hermes_synthetic_class_balanced.py
_base_ = '../hermes_synthetic.py'

model = dict(
    pseudo_labeler=dict(
        seg_threshold=dict(
            type='ClassBalancedDualThreshold', min_high=0.6, ratio=1.0,
            histogram_bins=50)))
