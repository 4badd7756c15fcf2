# Shipped Hermes (configs/demo/hermes_synthetic.py) with one student forward
# over the labelled images and the strong views, so BatchNorm's batch and
# running statistics come from both (model.joint_student_forward=True).
# Candidate of research/path_candidates/README.md: with perfect
# pseudo-labels this path element cost lesion Dice and accuracy
# (amendment 25 of benchmarks/results/PREREGISTRATION_styles.md).
_base_ = '../../../configs/demo/hermes_synthetic.py'

model = dict(joint_student_forward=True)
