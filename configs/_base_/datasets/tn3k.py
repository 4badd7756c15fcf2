# TN3K (thyroid nodules, benign/malignant) through the generic annotation-
# file dataset. Make the annotation file and a split with the official test
# set:
#   python tools/dataset_converters/tn3k.py data/TN3K --out data/TN3K/tn3k.jsonl \
#       --split-out data/TN3K/splits/split_0.125_seed0.json --labeled-ratio 0.125
_base_ = './busi.py'

dataset_type = 'MultiTaskAnnotationDataset'
data_root = 'data/TN3K'
ann_file = 'tn3k.jsonl'
split_file = 'data/TN3K/splits/split_0.125_seed0.json'
metainfo = dict(
    cls_classes=('benign', 'malignant'),
    lesion_classes=('benign', 'malignant'))
tn3k_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file=ann_file,
    split_file=split_file,
    metainfo=metainfo)
train_dataloader = dict(dataset=dict(_delete_=True, subset='labeled',
                                     pipeline={{_base_.train_pipeline}},
                                     **tn3k_dataset))
val_dataloader = dict(dataset=dict(_delete_=True, subset='val',
                                   test_mode=True,
                                   pipeline={{_base_.test_pipeline}},
                                   **tn3k_dataset))
test_dataloader = dict(dataset=dict(_delete_=True, subset='test',
                                    test_mode=True,
                                    pipeline={{_base_.test_pipeline}},
                                    **tn3k_dataset))
