# Issue-20 guard ablation: only the "consistency on confident lesions"
# guard of configs/demo/variants/hermes_synthetic_guarded.py.
_base_ = '../../../configs/demo/hermes_synthetic.py'

model = dict(consistency=dict(min_lesion_confidence=0.5))
