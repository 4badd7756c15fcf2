# Tiny supervised multi-task model (the CPU demo model at 64x64, 8..64
# channels) on a 24-image synthetic set, 2 iterations. Tests point
# `data_root` at a temporary folder.
_base_ = ['../../../configs/demo/supervised_synthetic.py']

size = (64, 64)
channels = [8, 16, 32, 64]
data_root = 'data/tiny_synthetic_busi'
synthetic = dict(num=24, generator_seed=0, labeled_ratio=0.25, split_seed=0)

model = dict(
    data_preprocessor=dict(size=size),
    backbone=dict(depth=18, base_channels=8, stem_channels=8),
    task_neck=dict(in_channels=channels, saliency_channels=8),
    decode_head=dict(in_channels=channels, channels=16),
    cls_head=dict(in_channels=channels[-1]))

test_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='Resize', scale=size, keep_ratio=False),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        pipeline=[
            dict(type='LoadImageAsStored'),
            dict(type='LoadMultiTaskAnnotations'),
            dict(type='Resize', scale=size, keep_ratio=False),
            dict(type='PackMultiTaskInputs'),
        ],
        **synthetic))
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
