# Hermes on BUSI (1/8 labels) where every CutMixed unlabelled image keeps
# its image-level signal (model.unmixed_image_view; see
# configs/demo/variants/hermes_synthetic_unmixed_view.py).
#   python tools/train.py configs/variants/hermes_busi_unmixed_view.py
_base_ = '../hermes_busi.py'

model = dict(unmixed_image_view=True)
