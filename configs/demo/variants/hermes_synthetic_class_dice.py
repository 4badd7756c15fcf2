# Hermes on the synthetic demo data with a per-class Dice loss: one soft Dice
# per class over the whole batch, averaged over the classes
# (ClassWiseDiceLoss), instead of MMSeg's Dice, which flattens both class
# channels of an image into one vector, so "no lesion anywhere" costs only
# the lesion's pixel share (README, "Known pitfalls"; issue 20's DiceLoss
# suspect). Cross-entropy unchanged. Applies to the labelled and the
# pseudo-labelled segmentation loss alike.
#   python tools/train.py configs/demo/variants/hermes_synthetic_class_dice.py
_base_ = '../hermes_synthetic.py'

model = dict(
    segmentor=dict(
        decode_head=dict(loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            dict(type='ClassWiseDiceLoss', loss_weight=1.0),
        ])))
