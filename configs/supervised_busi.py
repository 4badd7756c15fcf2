# Supervised multi-task baseline on BUSI: the Hermes network (ITAS neck
# included) trained on the labelled part of the split only.
#   python tools/make_split.py data/BUSI --labeled-ratio 0.125 --out data/BUSI/splits/split_0.125_seed0.json
#   python tools/train.py configs/supervised_busi.py --data-root data/BUSI --split-file data/BUSI/splits/split_0.125_seed0.json
_base_ = [
    '_base_/models/multitask_r50_upernet_itas.py',
    '_base_/datasets/busi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/schedule_20k.py',
]

# ImageNet initialisation, as in MMSegmentation's ResNetV1c configs (see
# hermes_busi.py). Local file:
#   --cfg-options model.backbone.init_cfg.checkpoint=resnet50_v1c.pth
# From scratch: --cfg-options model.backbone.init_cfg=None
model = dict(
    backbone=dict(
        init_cfg=dict(
            _delete_=True,  # the base model says None
            type='Pretrained',
            checkpoint='open-mmlab://resnet50_v1c')))
