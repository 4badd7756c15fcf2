# Fully-supervised upper bound on the synthetic demo data: every train image
# of the in-memory split with its label.
_base_ = '../supervised_synthetic.py'

train_dataloader = dict(dataset=dict(subset='train'))
