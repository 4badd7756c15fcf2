# Fully-supervised upper bound: the same network trained on every train image
# of the split with its label (labelled + unlabelled subsets).
_base_ = '../supervised_busi.py'

train_dataloader = dict(dataset=dict(subset='train'))
