# Ablation: Hermes on BUSI (1/8 labels) without the pixel-level contrastive loss.
_base_ = '../hermes_busi.py'

model = dict(pix_contrast=None)
