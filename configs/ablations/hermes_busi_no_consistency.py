# Ablation: Hermes on BUSI (1/8 labels) without the inter-task consistency loss.
_base_ = '../hermes_busi.py'

model = dict(consistency=None)
