# Hermes on BUSI (1/8 labels) with the plain adaptive pixel thresholds (see
# configs/demo/variants/hermes_synthetic_adaptive_threshold.py).
#   python tools/train.py configs/variants/hermes_busi_adaptive_threshold.py
_base_ = '../hermes_busi.py'

model = dict(
    pseudo_labeler=dict(
        seg_threshold=dict(
            _delete_=True,
            type='AdaptiveDualThreshold',
            tau_low=0.75,
            tau_high=0.95,
            momentum=0.999,
            margin=0.2,
            high_range=(0.8, 0.99),
            low_floor=0.5)))
