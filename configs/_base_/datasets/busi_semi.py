# Semi-supervised BUSI: every batch holds labelled images (one view) and
# unlabelled images (a weak and a strong view with the same geometry).
_base_ = ['./busi.py', './semi_views.py']

sup_pipeline = [
    dict(type='LoadImageAsStored'),
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
        branch_field={{_base_.branch_field}},
        sup=[dict(type='PackMultiTaskInputs')]),
]
unsup_pipeline = [
    dict(type='LoadImageAsStored'),
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
        branch_field={{_base_.branch_field}},
        unsup_weak=[dict(type='PackMultiTaskInputs')],
        unsup_strong={{_base_.strong_pipeline}}),
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
    batch_size={{_base_.samples_per_batch}},
    num_workers=2,
    persistent_workers=True,
    sampler=dict(
        type='MultiSourceRatioSampler',
        batch_size={{_base_.samples_per_batch}},
        source_ratio=[
            {{_base_.labeled_per_batch}}, {{_base_.unlabeled_per_batch}}
        ]),
    dataset=dict(
        type='ConcatDataset', datasets=[labeled_dataset, unlabeled_dataset]))
