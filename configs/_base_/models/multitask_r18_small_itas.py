# A small multi-task model for CPU demos and tests: a half-width
# ResNetV1c-18 (channels 32..256) -> ITAS neck -> UPerHead(64) + linear
# classifier. Same structure as multitask_r50_upernet_itas.py.
_base_ = './multitask_r50_upernet_itas.py'

channels = [32, 64, 128, 256]
data_preprocessor = dict(size=(128, 128))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18, base_channels=32, stem_channels=32),
    task_neck=dict(in_channels=channels),
    decode_head=dict(in_channels=channels, channels=64),
    cls_head=dict(in_channels=channels[-1]))
