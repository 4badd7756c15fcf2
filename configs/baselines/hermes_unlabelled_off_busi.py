# Hermes's supervised twin on BUSI (see
# configs/demo/baselines/hermes_unlabelled_off_synthetic.py): hermes_busi.py
# with every unlabelled loss weight at 0, so it trains on exactly Hermes's
# labelled batches; Hermes minus this is the effect of the unlabelled data.
_base_ = '../hermes_busi.py'

model = dict(
    unsup_weight=dict(value=0.0),
    contrast_weight=dict(value=0.0),
    consistency_weight=dict(value=0.0))
