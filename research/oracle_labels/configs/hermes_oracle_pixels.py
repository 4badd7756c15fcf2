# Hermes as shipped with the unlabelled images' hidden masks as pixel
# pseudo-labels (and the teacher's image pseudo-labels): an upper bound on
# what better pixel pseudo-labels could give
# (research/oracle_labels/README.md). Run from the repository root with
# PYTHONPATH=. (custom_imports in the base).
_base_ = './hermes_oracle_images.py'

model = dict(pseudo_labeler=dict(oracle_images=False, oracle_pixels=True))
