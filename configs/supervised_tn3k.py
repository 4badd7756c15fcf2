# Supervised multi-task baseline on TN3K (labelled images of the split only).
_base_ = [
    '_base_/models/multitask_r50_upernet_itas.py',
    '_base_/datasets/tn3k.py',
    '_base_/default_runtime.py',
    '_base_/schedules/schedule_20k.py',
]

model = dict(cls_head=dict(num_classes=2))
