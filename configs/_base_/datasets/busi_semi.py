# Semi-supervised BUSI: every batch holds labelled images (one view) and
# unlabelled images (a weak and a strong view with the same geometry).
_base_ = './busi.py'

branch_field = ['sup', 'unsup_weak', 'unsup_strong']
labeled_per_batch = 4
unlabeled_per_batch = 4

sup_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMultiTaskAnnotations'),
    dict(
        type='RandomResize',
        scale={{_base_.crop_size}},
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(
        type='MultiBranch',
        branch_field=branch_field,
        sup=[dict(type='PackMultiTaskInputs')]),
]
# Strong view: photometric jitter, blur, speckle noise, CutOut (CutMix is
# applied in-batch by the model). Geometry is shared with the weak view.
strong_pipeline = [
    dict(
        type='RandomApply',
        transforms=[dict(type='PhotoMetricDistortion')],
        prob=0.8),
    dict(
        type='RandomApply',
        transforms=[dict(type='mmpretrain.GaussianBlur', radius=None,
                         magnitude_range=(0.1, 2.0), magnitude_std='inf',
                         prob=1.0)],
        prob=0.5),
    dict(type='RandomSpeckleNoise', prob=0.5, sigma_range=(0.05, 0.2)),
    dict(type='RandomCutOut', prob=0.5, n_holes=(1, 3),
         cutout_ratio=[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)],
         fill_in=(0, 0, 0), seg_fill_in=None),
    dict(type='PackMultiTaskInputs'),
]
unsup_pipeline = [
    dict(type='LoadImageFromFile'),
    # Masks/labels of unlabelled images, if any, are kept aside (hidden_*)
    # for pseudo-label precision diagnostics only.
    dict(type='LoadMultiTaskAnnotations', hidden=True),
    dict(
        type='RandomResize',
        scale={{_base_.crop_size}},
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branch_field=branch_field,
        unsup_weak=[dict(type='PackMultiTaskInputs')],
        unsup_strong=strong_pipeline),
]

labeled_dataset = dict(
    type={{_base_.dataset_type}},
    data_root={{_base_.data_root}},
    split_file={{_base_.split_file}},
    subset='labeled',
    pipeline=sup_pipeline)
unlabeled_dataset = dict(
    type={{_base_.dataset_type}},
    data_root={{_base_.data_root}},
    split_file={{_base_.split_file}},
    subset='unlabeled',
    pipeline=unsup_pipeline)
train_dataloader = dict(
    _delete_=True,
    batch_size=labeled_per_batch + unlabeled_per_batch,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(
        type='MultiSourceRatioSampler',
        batch_size=labeled_per_batch + unlabeled_per_batch,
        source_ratio=[labeled_per_batch, unlabeled_per_batch]),
    dataset=dict(
        type='ConcatDataset', datasets=[labeled_dataset, unlabeled_dataset]))
