# Hermes on BUSI at 1/4 labels (same val/test images as the 1/8 split of the
# same seed, and a superset of its labelled images):
#   python tools/make_split.py data/BUSI --labeled-ratio 0.25 --out data/BUSI/splits/split_0.25_seed0.json
_base_ = './hermes_busi.py'

split_file = 'data/BUSI/splits/split_0.25_seed0.json'
train_dataloader = dict(
    dataset=dict(datasets=[
        dict(
            type={{_base_.dataset_type}},
            data_root={{_base_.data_root}},
            split_file=split_file,
            subset='labeled',
            pipeline={{_base_.sup_pipeline}}),
        dict(
            type={{_base_.dataset_type}},
            data_root={{_base_.data_root}},
            split_file=split_file,
            subset='unlabeled',
            pipeline={{_base_.unsup_pipeline}}),
    ]))
val_dataloader = dict(dataset=dict(split_file=split_file))
test_dataloader = dict(dataset=dict(split_file=split_file))
