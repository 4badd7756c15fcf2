# Hermes on TN3K (thyroid nodules: benign/malignant, every image has a
# nodule) at 1/8 labels, official test set:
#   python tools/dataset_converters/tn3k.py data/TN3K --out data/TN3K/tn3k.jsonl \
#       --split-out data/TN3K/splits/split_0.125_seed0.json --labeled-ratio 0.125
#   python tools/train.py configs/hermes_tn3k.py
_base_ = [
    '_base_/models/hermes_r50_upernet_itas.py',
    '_base_/datasets/tn3k_semi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/semi_schedule_20k.py',
]

# ImageNet initialisation (see hermes_busi.py); from scratch:
#   --cfg-options model.segmentor.backbone.init_cfg=None
model = dict(
    segmentor=dict(
        backbone=dict(
            init_cfg=dict(
                _delete_=True,  # the base model says None
                type='Pretrained',
                checkpoint='open-mmlab://resnet50_v1c')),
        cls_head=dict(num_classes=2)),
    img_contrast=dict(loss=dict(num_classes=2)),
    consistency=dict(lesion_classes=(0, 1)))
