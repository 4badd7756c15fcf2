# Hermes as shipped (configs/demo/hermes_synthetic.py) plus a label-free
# image-level InfoNCE term with teacher-side keys on the unlabelled images
# (research/instance_contrast/README.md). Run from the repository root with
# PYTHONPATH=. (custom_imports below).
_base_ = '../../../configs/demo/hermes_synthetic.py'

custom_imports = dict(
    imports=['hermes_mm', 'research.instance_contrast.instance_contrast'],
    allow_failed_imports=False)
model = dict(
    type='InstanceContrastHermes',
    inst_contrast=dict(
        type='InstanceContrastHead',
        # the demo model's classification vector is 256 wide
        projector=dict(
            type='ProjectionHead',
            in_channels=256,
            hidden_channels=128,
            out_channels=128),
        temperature=0.2,
        queue_size=256,
        key_momentum=0.99))
