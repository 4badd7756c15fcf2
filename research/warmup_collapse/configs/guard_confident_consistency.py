# Issue-20 guard ablation: only the "consistency on confident lesions"
# guard of configs/demo/variants/hermes_synthetic_guarded.py.
# Plain adaptive pixel thresholds, as when this ablation ran (before
# amendment 13 made the class-balanced ones the default).
_base_ = '../../../configs/demo/variants/hermes_synthetic_adaptive_threshold.py'  # noqa: E501

# The gate off, as when this ablation ran (2026-12-05, before the gate
# became a default).
model = dict(
    consistency=dict(min_lesion_confidence=0.5), lesion_share_gate=None)
