# Ablation: Hermes on the synthetic demo data without both contrastive losses (image and pixel level).
_base_ = '../hermes_synthetic.py'

model = dict(
    img_projector=None,
    img_contrast_loss=None,
    pix_projector=None,
    pix_contrast_loss=None)
