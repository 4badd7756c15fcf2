# Hermes on BUSI at 1/8 labels (tools/make_split.py --labeled-ratio 0.125):
#   python tools/make_split.py data/BUSI --labeled-ratio 0.125 --out data/BUSI/splits/split_0.125_seed0.json
#   python tools/train.py configs/hermes_busi.py --data-root data/BUSI --split-file data/BUSI/splits/split_0.125_seed0.json
_base_ = [
    '_base_/models/hermes_r50_upernet_itas.py',
    '_base_/datasets/busi_semi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/semi_schedule_20k.py',
]

# ImageNet initialisation, as in MMSegmentation's ResNetV1c configs. Offline,
# tools/train.py stops before training unless the weights are in torch's hub
# cache (~/.cache/torch/hub/checkpoints/resnet50_v1c-2cccc1ad.pth). Local file:
#   --cfg-options model.segmentor.backbone.init_cfg.checkpoint=resnet50_v1c.pth
# From scratch: --cfg-options model.segmentor.backbone.init_cfg=None
model = dict(
    segmentor=dict(
        backbone=dict(
            init_cfg=dict(
                _delete_=True,  # the base model says None
                type='Pretrained',
                checkpoint='open-mmlab://resnet50_v1c'))))
