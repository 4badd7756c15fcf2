# Supervised multi-task baseline on TN3K (labelled images of the split only).
_base_ = [
    '_base_/models/multitask_r50_upernet_itas.py',
    '_base_/datasets/tn3k.py',
    '_base_/default_runtime.py',
    '_base_/schedules/schedule_20k.py',
]

# ImageNet initialisation (see hermes_busi.py); from scratch:
#   --cfg-options model.backbone.init_cfg=None
model = dict(
    backbone=dict(
        init_cfg=dict(
            _delete_=True,  # the base model says None
            type='Pretrained',
            checkpoint='open-mmlab://resnet50_v1c')),
    cls_head=dict(num_classes=2))
