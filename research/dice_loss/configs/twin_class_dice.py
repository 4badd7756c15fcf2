# Issue 20, amendment 16: Hermes's supervised twin (every unlabelled loss
# weight 0) with the per-class Dice loss, so the class-Dice Hermes can be
# paired per seed against a twin with the same segmentation loss.
_base_ = '../../../configs/demo/variants/hermes_synthetic_class_dice.py'  # noqa: E501

model = dict(
    unsup_weight=dict(value=0.0),
    contrast_weight=dict(value=0.0),
    consistency_weight=dict(value=0.0))
