# Ablation: Hermes on the synthetic demo data without both contrastive losses (image and pixel level).
_base_ = '../hermes_synthetic.py'

model = dict(
    img_contrast=None,
    pix_contrast=None)
