# Hermes's supervised twin: configs/demo/hermes_synthetic.py with every
# unlabelled loss weight at 0 and two student forwards. It trains on exactly
# Hermes's labelled batches (same sampler, same augmentations, same random
# draws: CutMix, pixel sampling and the teacher still run, their losses
# weigh 0), with BN statistics from those labelled images alone: it is the
# supervised learner, and differs from Hermes only by what the unlabelled
# images add (their losses, and the strong views in Hermes's BN batch).
# Hermes minus this, paired per seed, is the effect of the unlabelled data
# alone (supervised_matched has the same *number* of labelled images per
# step but other batches).
_base_ = '../hermes_synthetic.py'

model = dict(
    # Two student forwards: BN statistics from the labelled images alone,
    # so the twin is the supervised learner, which never sees an unlabelled
    # image (Hermes itself shares one forward, joint_student_forward=True;
    # amendment 28 of benchmarks/results/PREREGISTRATION_styles.md).
    joint_student_forward=False,
    unsup_weight=dict(value=0.0),
    contrast_weight=dict(value=0.0),
    consistency_weight=dict(value=0.0))
