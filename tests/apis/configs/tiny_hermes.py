# Tiny Hermes for the inference / visualisation / distributed tests: the CPU
# demo model at 64x64 with 8..64 channels, 2 labelled + 2 unlabelled images
# per batch on a 24-image synthetic set, 2 iterations, every loss term on
# from the first iteration. SyncBN stays (the demo model's norm), so the
# configs also check that SyncBN runs on one process and under CPU DDP.
# Tests point `data_root` at a temporary folder (rewrite_datasets or
# tools/train.py --data-root).
_base_ = ['../../../configs/demo/hermes_synthetic.py']

size = (64, 64)
channels = [8, 16, 32, 64]
data_root = 'data/tiny_synthetic_busi'
synthetic = dict(num=24, generator_seed=0, labeled_ratio=0.25, split_seed=0)

model = dict(
    segmentor=dict(
        backbone=dict(depth=18, base_channels=8, stem_channels=8),
        task_neck=dict(in_channels=channels, saliency_channels=8),
        decode_head=dict(in_channels=channels, channels=16),
        cls_head=dict(in_channels=channels[-1])),
    data_preprocessor=dict(data_preprocessor=dict(size=size)),
    img_contrast=dict(
        projector=dict(
            in_channels=channels[-1], hidden_channels=16, out_channels=8),
        loss=dict(feat_dim=8, queue_size_per_class=4)),
    pix_contrast=dict(
        projector=dict(
            in_channels=channels[1], hidden_channels=8, out_channels=8),
        loss=dict(feat_dim=8, num_anchors_per_class=16, num_negatives=32)),
    unsup_weight=dict(start=0, length=1),
    contrast_weight=dict(start=0, length=1),
    consistency_weight=dict(start=0, length=1))

geometric = [
    dict(type='Resize', scale=size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
]
test_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='Resize', scale=size, keep_ratio=False),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(batch_size=4, source_ratio=[2, 2]),
    dataset=dict(datasets=[
        dict(
            type='SyntheticBUSIDataset',
            data_root=data_root,
            subset='labeled',
            pipeline=[
                dict(type='LoadImageAsStored'),
                dict(type='LoadMultiTaskAnnotations'),
                *geometric,
                dict(
                    type='MultiBranch',
                    branch_field={{_base_.branch_field}},
                    sup=[dict(type='PackMultiTaskInputs')]),
            ],
            **synthetic),
        dict(
            type='SyntheticBUSIDataset',
            data_root=data_root,
            subset='unlabeled',
            pipeline=[
                dict(type='LoadImageAsStored'),
                dict(type='LoadMultiTaskAnnotations', hidden=True),
                *geometric,
                dict(
                    type='MultiBranch',
                    branch_field={{_base_.branch_field}},
                    unsup_weak=[dict(type='PackMultiTaskInputs')],
                    unsup_strong={{_base_.strong_pipeline}}),
            ],
            **synthetic),
    ]))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, **synthetic))
test_dataloader = val_dataloader

max_iters = 2
param_scheduler = []
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=max_iters, save_best=None))
