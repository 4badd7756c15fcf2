# Supervised multi-task baseline on the built-in synthetic data (CPU demo):
#   python tools/train.py configs/demo/supervised_synthetic.py
_base_ = [
    '../_base_/models/multitask_r18_small_itas.py',
    '../_base_/datasets/synthetic_busi.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_demo.py',
]
