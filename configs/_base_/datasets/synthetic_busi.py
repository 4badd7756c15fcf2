# The built-in synthetic BUSI-layout set (generated into data_root on first
# use, split in memory: no download, no split file). For demos and tests.
_base_ = './busi.py'

dataset_type = 'SyntheticBUSIDataset'
data_root = 'data/synthetic_busi'
crop_size = (128, 128)
synthetic = dict(
    num=200, generator_seed=0, labeled_ratio=0.125, split_seed=0)

train_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        subset='labeled',
        pipeline=train_pipeline,
        **synthetic))
val_dataloader = dict(
    batch_size=4,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        subset='val',
        test_mode=True,
        pipeline=test_pipeline,
        **synthetic))
test_dataloader = dict(
    batch_size=4,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        subset='test',
        test_mode=True,
        pipeline=test_pipeline,
        **synthetic))
