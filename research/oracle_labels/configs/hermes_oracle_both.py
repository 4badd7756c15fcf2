# Hermes as shipped with both hidden annotations as pseudo-labels (image
# labels and masks): pseudo-label quality taken out, so what is left of the
# twin -> fully-supervised gap belongs to the semi-supervised path itself
# (research/oracle_labels/README.md, "The path"). PYTHONPATH=. as for the
# other oracle configs.
_base_ = './hermes_oracle_images.py'

model = dict(pseudo_labeler=dict(oracle_images=True, oracle_pixels=True))
