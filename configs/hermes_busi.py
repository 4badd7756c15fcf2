# Hermes on BUSI at 1/8 labels (tools/make_split.py --labeled-ratio 0.125):
#   python tools/make_split.py data/BUSI --labeled-ratio 0.125 --out data/BUSI/splits/split_0.125_seed0.json
#   python tools/train.py configs/hermes_busi.py --data-root data/BUSI --split-file data/BUSI/splits/split_0.125_seed0.json
_base_ = [
    '_base_/models/hermes_r50_upernet_itas.py',
    '_base_/datasets/busi_semi.py',
    '_base_/default_runtime.py',
    '_base_/schedules/semi_schedule_20k.py',
]
