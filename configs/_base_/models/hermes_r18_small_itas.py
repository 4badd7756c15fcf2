# Hermes around the small multi-task model (see multitask_r18_small_itas.py)
# for CPU demos and tests; same method settings as hermes_r50_upernet_itas.
_base_ = './hermes_r50_upernet_itas.py'

channels = [32, 64, 128, 256]
semi_warmup_iters = 100
semi_ramp_iters = 200
model = dict(
    segmentor=dict(
        # Ignored by Hermes (it uses the preprocessor below); kept in step.
        data_preprocessor=dict(size=(128, 128)),
        backbone=dict(depth=18, base_channels=32, stem_channels=32),
        task_neck=dict(in_channels=channels),
        decode_head=dict(in_channels=channels, channels=64),
        cls_head=dict(in_channels=channels[-1])),
    data_preprocessor=dict(data_preprocessor=dict(size=(128, 128))),
    # A 600-iteration schedule: EMA decay 0.99 (a ~100-iteration window)
    # after the supervised warm-up, during which the teacher copies the
    # student.
    ema=dict(momentum=0.01),
    # Threshold statistics adapt over ~100 iterations, not ~1000.
    pseudo_labeler=dict(
        seg_threshold=dict(momentum=0.99),
        cls_threshold=dict(momentum=0.99)),
    unsup_weight=dict(start=semi_warmup_iters, length=semi_ramp_iters),
    contrast_weight=dict(start=semi_warmup_iters, length=semi_ramp_iters),
    consistency_weight=dict(start=semi_warmup_iters, length=semi_ramp_iters),
    img_contrast=dict(
        projector=dict(in_channels=channels[-1], hidden_channels=128)),
    pix_contrast=dict(
        projector=dict(in_channels=channels[1], hidden_channels=64)))
