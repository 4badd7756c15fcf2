# Hermes on BUSI (1/8 labels) with the per-class Dice loss (see
# configs/demo/variants/hermes_synthetic_class_dice.py).
#   python tools/train.py configs/variants/hermes_busi_class_dice.py
_base_ = '../hermes_busi.py'

model = dict(
    segmentor=dict(
        decode_head=dict(loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            dict(type='ClassWiseDiceLoss', loss_weight=1.0),
        ])))
