# Ablation: Hermes on the synthetic demo data without the pixel-level contrastive loss.
_base_ = '../hermes_synthetic.py'

model = dict(pix_contrast=None)
