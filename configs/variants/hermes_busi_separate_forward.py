# Hermes on BUSI (1/8 labels) with two student forwards, BN statistics from
# the labelled images only (see
# configs/demo/variants/hermes_synthetic_separate_forward.py).
#   python tools/train.py configs/variants/hermes_busi_separate_forward.py
_base_ = '../hermes_busi.py'

model = dict(joint_student_forward=False)
