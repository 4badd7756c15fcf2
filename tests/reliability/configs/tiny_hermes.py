# Tiny Hermes for the reliability tests (kill/resume, determinism): the
# CPU demo model at 64x64, 2 labelled + 2 unlabelled images per batch, 8
# iterations, a checkpoint every 2 (only the newest kept: the case where a
# crash mid-save used to lose everything), no validation, every loss term
# and the threshold/queue state active from the first iteration.
# The tests pass --data-root and --split-file (a tiny generated set) and
# run tools/train.py through fault_injection.py, which registers the test
# hooks used here.
_base_ = ['../../../configs/demo/hermes_synthetic.py']

size = (64, 64)
max_iters = 8
geometric = [
    dict(type='Resize', scale=size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(_delete_=True, type='MultiSourceRatioSampler',
                 batch_size=4, source_ratio=[2, 2]),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='BUSIDataset', data_root='unset', split_file='unset',
             subset='labeled',
             pipeline=[
                 dict(type='LoadImageAsStored'),
                 dict(type='LoadMultiTaskAnnotations'),
                 *geometric,
                 dict(type='PhotoMetricDistortion'),
                 dict(type='MultiBranch',
                      branch_field={{_base_.branch_field}},
                      sup=[dict(type='PackMultiTaskInputs')]),
             ]),
        dict(type='BUSIDataset', data_root='unset', split_file='unset',
             subset='unlabeled',
             pipeline=[
                 dict(type='LoadImageAsStored'),
                 dict(type='LoadMultiTaskAnnotations', hidden=True),
                 *geometric,
                 dict(type='MultiBranch',
                      branch_field={{_base_.branch_field}},
                      unsup_weak=[dict(type='PackMultiTaskInputs')],
                      unsup_strong={{_base_.strong_pipeline}}),
             ]),
    ]))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

ramp = dict(start=0, length=2)
channels = [16, 32, 64, 128]
model = dict(
    segmentor=dict(
        backbone=dict(base_channels=16, stem_channels=16),
        task_neck=dict(in_channels=channels),
        decode_head=dict(in_channels=channels, channels=32),
        cls_head=dict(in_channels=channels[-1])),
    img_contrast=dict(
        projector=dict(in_channels=channels[-1], hidden_channels=64)),
    pix_contrast=dict(
        projector=dict(in_channels=channels[1], hidden_channels=32)),
    data_preprocessor=dict(data_preprocessor=dict(size=size)),
    pseudo_labeler=dict(
        cls_threshold=dict(tau_low=0.2, tau_high=0.4, high_range=(0.3, 0.9),
                           low_floor=0.1)),
    unsup_weight=ramp,
    contrast_weight=ramp,
    consistency_weight=ramp)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, begin=0, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=1000)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2, max_keep_ckpts=1, save_best=None))
custom_hooks = [
    dict(type='TeacherThresholdUpdateHook'),
    dict(type='RecordTrainingHook'),
]
