# Shipped Hermes (configs/demo/hermes_synthetic.py) with one student forward
# over the labelled images and the strong views, so BatchNorm's batch and
# running statistics come from both (model.joint_student_forward=True, set
# here explicitly: it is what the `joint_bn` runs of
# benchmarks/results/ledger/ measured). Candidate of
# research/path_candidates/README.md, measured against two forwards
# (configs/demo/variants/hermes_synthetic_separate_forward.py); it passed the
# pre-registered 2400-iteration adoption test (amendment 26 stage 2 of
# benchmarks/results/PREREGISTRATION_styles.md) and is now the default, so
# this config equals configs/demo/hermes_synthetic.py.
_base_ = '../../../configs/demo/hermes_synthetic.py'

model = dict(joint_student_forward=True)
