# Supervised baseline on BUSI with Hermes's labelled images per step (4, the
# semi-supervised configs' labeled_per_batch, instead of 8): a comparison
# with configs/hermes_busi.py matched on labelled images per step.
_base_ = '../supervised_busi.py'

train_dataloader = dict(batch_size=4)
