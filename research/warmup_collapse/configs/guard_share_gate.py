# Issue-20 guard ablation: only the LesionShareGate of
# configs/demo/variants/hermes_synthetic_guarded.py (same settings). Since
# 2026-12-06 every Hermes config has this gate, so this is Hermes as
# shipped between amendments 7 and 13. Based on the plain adaptive pixel
# thresholds, as when its runs were made (amendment 13 made the
# class-balanced ones the default).
_base_ = '../../../configs/demo/variants/hermes_synthetic_adaptive_threshold.py'  # noqa: E501

model = dict(
    lesion_share_gate=dict(
        type='LesionShareGate', min_ratio=0.25, momentum=0.9))
