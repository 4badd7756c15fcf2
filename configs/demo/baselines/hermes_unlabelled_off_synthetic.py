# Hermes's supervised twin: configs/demo/hermes_synthetic.py with every
# unlabelled loss weight at 0. It trains on exactly Hermes's labelled
# batches (same sampler, same augmentations, same random draws: CutMix,
# pixel sampling and the teacher still run, their losses weigh 0), so with
# one intra-op thread it is step for step Hermes's supervised warm-up, and
# afterwards differs from Hermes only by what the unlabelled images add.
# Hermes minus this, paired per seed, is the effect of the unlabelled data
# alone (supervised_matched has the same *number* of labelled images per
# step but other batches).
_base_ = '../hermes_synthetic.py'

model = dict(
    unsup_weight=dict(value=0.0),
    contrast_weight=dict(value=0.0),
    consistency_weight=dict(value=0.0))
