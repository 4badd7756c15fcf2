# Hermes as shipped until 2026-12-07 (two student forwards,
# configs/demo/variants/hermes_synthetic_separate_forward.py) with one
# student forward over the labelled images and the strong views, so
# BatchNorm's batch and running statistics come from both
# (model.joint_student_forward=True). Candidate of
# research/path_candidates/README.md; it passed the pre-registered
# 2400-iteration adoption test (amendment 26 stage 2 of
# benchmarks/results/PREREGISTRATION_styles.md) and is now the default, so
# this config equals configs/demo/hermes_synthetic.py. Kept under its name
# for the runs of benchmarks/results/ledger/ (variant `joint_bn`).
_base_ = '../../../configs/demo/variants/hermes_synthetic_separate_forward.py'  # noqa: E501

model = dict(joint_student_forward=True)
