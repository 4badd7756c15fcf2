# hermes_oracle_both.py with one student forward over the labelled images
# and the strong views (BatchNorm batch and running statistics from both,
# the pre-2026-12 behaviour): does the separate strong-view forward, whose
# batch statistics differ from the running ones used at test time, keep
# the unlabelled path from carrying over?
_base_ = './hermes_oracle_both.py'

model = dict(joint_student_forward=True)
