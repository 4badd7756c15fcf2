# 20k iterations, AdamW + linear warm-up + poly decay.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                   weight_decay=0.01),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, begin=0, end=500,
         by_epoch=False),
    dict(type='PolyLR', eta_min=1e-6, power=1.0, begin=500, end=20000,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20000,
                 val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='AtomicCheckpointHook',
        by_epoch=False,
        interval=1000,
        max_keep_ckpts=3,
        save_best='seg/dice',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Validation panels (image | ground truth | prediction) every `interval`
    # images when draw=True (tools/test.py --show-dir turns it on), and the
    # teacher's pseudo-label zones every `pseudo_label_interval` iterations.
    visualization=dict(
        type='HermesVisualizationHook',
        draw=False,
        interval=50,
        pseudo_label_interval=0))
