# Hermes on the synthetic demo data with the plain adaptive pixel
# thresholds (the default before issue 20's amendment 13): no class
# balancing, so the lesion's upper threshold rests at its high_range floor
# (0.8) and the reliable lesion pseudo-labels hold a fraction of the
# labelled lesion share (docs/method.md section 3).
#   python tools/train.py configs/demo/variants/hermes_synthetic_adaptive_threshold.py
_base_ = '../hermes_synthetic.py'

model = dict(
    pseudo_labeler=dict(
        seg_threshold=dict(
            _delete_=True,
            type='AdaptiveDualThreshold',
            tau_low=0.75,
            tau_high=0.95,
            momentum=0.99,  # the small model's (hermes_r18_small_itas.py)
            margin=0.2,
            high_range=(0.8, 0.99),
            low_floor=0.5)))
