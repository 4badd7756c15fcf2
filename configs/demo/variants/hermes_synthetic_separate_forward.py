# Hermes on the synthetic demo data with two student forwards (the default
# from 2026-12-05 to 2026-12-07): the labelled images alone, then the
# strong views with the BN running statistics frozen, so BN statistics come
# from labelled images only. The `class_balanced_gated` runs of issue 20's
# studies (benchmarks/results/ledger/) ran this path; the default shares one
# forward (joint_student_forward=True, docs/method.md section 2).
#   python tools/train.py configs/demo/variants/hermes_synthetic_separate_forward.py
_base_ = '../hermes_synthetic.py'

model = dict(joint_student_forward=False)
