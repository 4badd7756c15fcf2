# BUSI (Al-Dhabyani et al., 2020) in its raw layout: benign/ malignant/
# normal/ with `<name>_mask.png` (+ `<name>_mask_1.png`) files. Use
# `tools/make_split.py` for the split file; `tools/train.py --data-root
# --split-file` rewrites both for every dataset below.
dataset_type = 'BUSIDataset'
data_root = 'data/BUSI'
split_file = 'data/BUSI/splits/split_0.125_seed0.json'
crop_size = (256, 256)
cls_classes = ('benign', 'malignant', 'normal')

train_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    # Loaded after Resize: metrics are computed at the original size.
    dict(type='LoadMultiTaskAnnotations'),
    dict(type='PackMultiTaskInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_file=split_file,
        subset='labeled',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_file=split_file,
        subset='val',
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split_file=split_file,
        subset='test',
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(type='MultiTaskMetric')
test_evaluator = val_evaluator
