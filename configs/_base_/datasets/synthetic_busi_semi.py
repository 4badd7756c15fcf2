# Semi-supervised batches on the built-in synthetic set: the labelled and
# unlabelled parts of the in-memory split (see synthetic_busi.py), with the
# weak/strong views of semi_views.py at the synthetic crop size.
_base_ = ['./synthetic_busi.py', './semi_views.py']

crop_size = (128, 128)
geometric = [
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
]
sup_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='LoadMultiTaskAnnotations'),
    *geometric,
    dict(type='PhotoMetricDistortion'),
    dict(
        type='MultiBranch',
        branch_field={{_base_.branch_field}},
        sup=[dict(type='PackMultiTaskInputs')]),
]
unsup_pipeline = [
    dict(type='LoadImageAsStored'),
    dict(type='LoadMultiTaskAnnotations', hidden=True),
    *geometric,
    dict(
        type='MultiBranch',
        branch_field={{_base_.branch_field}},
        unsup_weak=[dict(type='PackMultiTaskInputs')],
        unsup_strong={{_base_.strong_pipeline}}),
]
batch_size = {{_base_.samples_per_batch}}
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(
        _delete_=True,
        type='MultiSourceRatioSampler',
        batch_size=batch_size,
        source_ratio=[
            {{_base_.labeled_per_batch}}, {{_base_.unlabeled_per_batch}}
        ]),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(
            type='SyntheticBUSIDataset',
            data_root={{_base_.data_root}},
            subset='labeled',
            pipeline=sup_pipeline,
            num={{_base_.synthetic.num}},
            generator_seed={{_base_.synthetic.generator_seed}},
            labeled_ratio={{_base_.synthetic.labeled_ratio}},
            split_seed={{_base_.synthetic.split_seed}}),
        dict(
            type='SyntheticBUSIDataset',
            data_root={{_base_.data_root}},
            subset='unlabeled',
            pipeline=unsup_pipeline,
            num={{_base_.synthetic.num}},
            generator_seed={{_base_.synthetic.generator_seed}},
            labeled_ratio={{_base_.synthetic.labeled_ratio}},
            split_seed={{_base_.synthetic.split_seed}}),
    ]))
