# Ablation: Hermes on BUSI (1/8 labels) without both contrastive losses (image and pixel level).
_base_ = '../hermes_busi.py'

model = dict(
    img_contrast=None,
    pix_contrast=None)
