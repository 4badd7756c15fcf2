# Multi-task model: ResNetV1c-50 -> ITAS neck -> UPerHead (lesion mask) +
# linear classifier (image class). Swap any part through the registry, e.g.
# backbone=dict(type='mmpretrain.ConvNeXt', ...) with matching in_channels.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN when not distributed
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(256, 256))
model = dict(
    type='MultiTaskSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        # No download on offline machines: set e.g.
        # init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')
        init_cfg=None),
    task_neck=dict(
        type='ITASNeck',
        in_channels=[256, 512, 1024, 2048],
        cls_in_index=3,
        gate_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=256,
        dropout_ratio=0.1,
        num_classes=2,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            dict(type='IgnoreIndexDiceLoss', loss_weight=1.0),
        ]),
    cls_head=dict(
        type='mmpretrain.LinearClsHead',
        num_classes=3,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
