# Hermes on the built-in synthetic data at 1/8 labels (CPU demo: 600
# iterations, 3-6 min on 2 CPU cores, README "Run the demo"):
#   python tools/train.py configs/demo/hermes_synthetic.py
_base_ = [
    '../_base_/models/hermes_r18_small_itas.py',
    '../_base_/datasets/synthetic_busi_semi.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/semi_schedule_demo.py',
]
