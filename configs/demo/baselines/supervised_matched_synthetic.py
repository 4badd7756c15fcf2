# Supervised baseline with Hermes's labelled images per step: 4 labelled
# images a step (the semi-supervised configs' labeled_per_batch) instead of
# the supervised config's 8, so a comparison with Hermes is matched on
# labelled images per step (issue 20).
_base_ = '../supervised_synthetic.py'

train_dataloader = dict(batch_size=4)
