# Hermes around the multi-task model of multitask_r50_upernet_itas.py:
# EMA teacher, dual-threshold pseudo-labels for pixels and images, image-
# and pixel-level dual-threshold contrastive losses, inter-task consistency.
_base_ = './multitask_r50_upernet_itas.py'

# Supervised warm-up, then the unlabelled terms ramp up (sigmoid).
semi_warmup_iters = 1000
semi_ramp_iters = 2000

model = dict(
    _delete_=True,
    type='HermesSegmentor',
    segmentor={{_base_.model}},
    data_preprocessor=dict(
        type='MultiBranchSegDataPreProcessor',
        data_preprocessor={{_base_.data_preprocessor}}),
    # teacher = 0.999 * teacher + 0.001 * student (MMEngine's momentum is
    # the student's weight); BN statistics are averaged too.
    ema=dict(
        type='ForeachExponentialMovingAverage',
        momentum=0.001,
        update_buffers=True),
    # Dual-threshold pixel and image pseudo-labels; the thresholds adapt
    # (FreeMatch-style, clamped to high_range / low_floor). Pixels: then the
    # lesion's upper threshold is lowered (histogram edges, not below
    # min_high) until the reliable lesion pseudo-labels hold the labelled
    # lesion share (CBST / DARS; docs/method.md section 3). Default since
    # issue 20's amendment 13 (benchmarks/results/PREREGISTRATION_styles.md);
    # the plain adaptive policy: configs/variants/*_adaptive_threshold.py.
    pseudo_labeler=dict(
        type='DualThresholdPseudoLabeler',
        seg_threshold=dict(
            type='ClassBalancedDualThreshold',
            tau_low=0.75,
            tau_high=0.95,
            momentum=0.999,
            margin=0.2,
            high_range=(0.8, 0.99),
            low_floor=0.5,
            min_high=0.6,
            ratio=1.0,
            histogram_bins=50),
        cls_threshold=dict(
            type='AdaptiveDualThreshold',
            tau_low=0.6,
            tau_high=0.9,
            momentum=0.999,
            margin=0.3,
            # An image pseudo-label needs >= 0.8 confidence however unsure the
            # teacher is of a class: noisy class labels hurt more than few.
            high_range=(0.8, 0.97),
            low_floor=0.5)),
    unsup_weight=dict(
        type='RampSchedule',
        value=1.0,
        start=semi_warmup_iters,
        length=semi_ramp_iters),
    contrast_weight=dict(
        type='RampSchedule',
        value=0.1,
        start=semi_warmup_iters,
        length=semi_ramp_iters),
    consistency_weight=dict(
        type='RampSchedule',
        value=0.1,
        start=semi_warmup_iters,
        length=semi_ramp_iters),
    img_contrast=dict(
        type='ImageContrastHead',
        projector=dict(
            type='ProjectionHead',
            in_channels=2048,
            hidden_channels=512,
            out_channels=128),
        loss=dict(
            type='DualThresholdSupConLoss',
            num_classes=3,
            feat_dim=128,
            queue_size_per_class=64,
            temperature=0.1)),
    pix_contrast=dict(
        type='PixelContrastHead',
        in_index=1,
        projector=dict(
            type='PixelProjectionHead',
            in_channels=512,
            hidden_channels=256,
            out_channels=64),
        loss=dict(
            type='PixelContrastLoss',
            num_classes=2,
            feat_dim=64,
            num_anchors_per_class=256,
            num_negatives=512,
            temperature=0.1)),
    consistency=dict(
        type='InterTaskConsistencyHead',
        attention='cam',
        lesion_classes=(0, 1),  # benign, malignant: the classes with a lesion
        loss=dict(
            type='InterTaskConsistencyLoss',
            feature_weight=1.0,
            map_weight=1.0,
            detach='seg')),
    lesion_index=1,
    cutmix_prob=0.5,
    # One student forward over labelled images and strong views: BN batch
    # and running statistics from both. Adopted on 2026-12-07 by issue 20's
    # pre-registered 2400-iteration test (amendment 26 stage 2 of
    # benchmarks/results/PREREGISTRATION_styles.md); False: two forwards,
    # BN running statistics from labelled images only (the supervised
    # twin's path, configs/*/baselines/hermes_unlabelled_off_*.py).
    joint_student_forward=True,
    # Do-no-harm guard (issue 20): while the teacher's reliable lesion
    # pseudo-labels hold less than a quarter of the labelled lesion share
    # (a teacher that has not found the lesion yet), the pixel pseudo-label
    # loss is scaled down, to 0 for none, so all-background pseudo-labels
    # cannot lock in "no lesion" (README, results per data style).
    lesion_share_gate=dict(
        type='LesionShareGate', min_ratio=0.25, momentum=0.9),
    predict_on='teacher')
