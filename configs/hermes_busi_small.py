# Hermes on real BUSI with the small CPU model of configs/demo: a half-width
# ResNetV1c-18 -> ITAS -> UPerHead(64) + linear classifier, no pretrained
# weights, 256x256 crops, 4 labelled + 4 unlabelled images per batch,
# 2400 iterations. What a CPU-only user can train (README, "Costs");
# configs/hermes_busi.py (ResNet-50, 20k iterations) needs a GPU.
#   python tools/make_split.py data/BUSI --labeled-ratio 0.125 --seed 0 --out data/BUSI/splits/split_0.125_seed0.json
#   python tools/train.py configs/hermes_busi_small.py --data-root data/BUSI --split-file data/BUSI/splits/split_0.125_seed0.json
_base_ = [
    '_base_/models/hermes_r18_small_itas.py',
    '_base_/datasets/busi_semi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/semi_schedule_demo.py',
]

crop_size = (256, 256)  # the BUSI pipelines' (_base_/datasets/busi.py)
max_iters = 2400
model = dict(
    segmentor=dict(data_preprocessor=dict(size=crop_size)),
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=50, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=50, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=1))
