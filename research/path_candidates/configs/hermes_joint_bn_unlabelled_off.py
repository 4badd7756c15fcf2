# The supervised twin (configs/demo/baselines/hermes_unlabelled_off_synthetic
# .py: every unlabelled loss weight 0) with `joint_bn`'s single student
# forward over the labelled images and the strong views. Not a candidate:
# the control of amendment 27 (benchmarks/results/PREREGISTRATION_styles.md)
# that splits `joint_bn`'s gain into what the shared BatchNorm batch does
# without any pseudo-label (this minus the twin) and what the unlabelled
# losses add on that path (`joint_bn` minus this).
_base_ = '../../../configs/demo/baselines/hermes_unlabelled_off_synthetic.py'

model = dict(joint_student_forward=True)
