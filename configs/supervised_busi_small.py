# The supervised baseline of configs/hermes_busi_small.py: the same small
# network on the labelled images of the split only, same schedule.
#   python tools/train.py configs/supervised_busi_small.py --data-root data/BUSI --split-file data/BUSI/splits/split_0.125_seed0.json
_base_ = [
    '_base_/models/multitask_r18_small_itas.py',
    '_base_/datasets/busi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/schedule_demo.py',
]

crop_size = (256, 256)
max_iters = 2400
model = dict(data_preprocessor=dict(size=crop_size))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=50, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=50, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=400)
default_hooks = dict(checkpoint=dict(interval=400, max_keep_ckpts=1))
