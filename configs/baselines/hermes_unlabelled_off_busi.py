# Hermes's supervised twin on BUSI (see
# configs/demo/baselines/hermes_unlabelled_off_synthetic.py): hermes_busi.py
# with every unlabelled loss weight at 0, so it trains on exactly Hermes's
# labelled batches; Hermes minus this is the effect of the unlabelled data.
_base_ = '../hermes_busi.py'

model = dict(
    # Two student forwards: BN statistics from the labelled images alone,
    # so the twin is the supervised learner, which never sees an unlabelled
    # image (Hermes itself shares one forward, joint_student_forward=True;
    # amendment 28 of benchmarks/results/PREREGISTRATION_styles.md).
    joint_student_forward=False,
    unsup_weight=dict(value=0.0),
    contrast_weight=dict(value=0.0),
    consistency_weight=dict(value=0.0))
