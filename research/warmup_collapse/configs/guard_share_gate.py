# Issue-20 guard ablation: only the LesionShareGate of
# configs/demo/variants/hermes_synthetic_guarded.py (same settings). Since
# 2026-12-06 every Hermes config has this gate, so this is Hermes itself.
_base_ = '../../../configs/demo/hermes_synthetic.py'

model = dict(
    lesion_share_gate=dict(
        type='LesionShareGate', min_ratio=0.25, momentum=0.9))
