# Hermes as shipped until 2026-12-07 (two student forwards,
# configs/demo/variants/hermes_synthetic_separate_forward.py, the path it
# was measured on) with the strong view made the weak one (no colour
# jitter, blur, speckle noise or CutOut; the geometry stays shared) and no
# CutMix. Candidate of
# research/path_candidates/README.md: with perfect pseudo-labels the strong
# perturbations cost lesion Dice and accuracy (amendment 25 of
# benchmarks/results/PREREGISTRATION_styles.md).
_base_ = '../../../configs/demo/variants/hermes_synthetic_separate_forward.py'  # noqa: E501

model = dict(cutmix_prob=0.0)
train_dataloader = dict(
    dataset=dict(datasets=[
        dict(
            type='SyntheticBUSIDataset',
            data_root={{_base_.data_root}},
            subset='labeled',
            pipeline={{_base_.sup_pipeline}},
            num={{_base_.synthetic.num}},
            generator_seed={{_base_.synthetic.generator_seed}},
            labeled_ratio={{_base_.synthetic.labeled_ratio}},
            split_seed={{_base_.synthetic.split_seed}}),
        dict(
            type='SyntheticBUSIDataset',
            data_root={{_base_.data_root}},
            subset='unlabeled',
            pipeline=[
                dict(type='LoadImageAsStored'),
                dict(type='LoadMultiTaskAnnotations', hidden=True),
                # the geometry of _base_/datasets/synthetic_busi_semi.py
                dict(
                    type='RandomResize',
                    scale={{_base_.crop_size}},
                    ratio_range=(0.8, 1.25),
                    keep_ratio=True),
                dict(type='RandomCrop', crop_size={{_base_.crop_size}},
                     cat_max_ratio=1.0),
                dict(type='RandomFlip', prob=0.5),
                dict(
                    type='MultiBranch',
                    branch_field={{_base_.branch_field}},
                    unsup_weak=[dict(type='PackMultiTaskInputs')],
                    unsup_strong=[dict(type='PackMultiTaskInputs')]),
            ],
            num={{_base_.synthetic.num}},
            generator_seed={{_base_.synthetic.generator_seed}},
            labeled_ratio={{_base_.synthetic.labeled_ratio}},
            split_seed={{_base_.synthetic.split_seed}}),
    ]))
