# Ablation: Hermes on the synthetic demo data without the inter-task consistency loss.
_base_ = '../hermes_synthetic.py'

model = dict(consistency=None)
