# Semi-supervised TN3K: the views and sampler of busi_semi.py on the
# annotation-file dataset (see tn3k.py for making the file and the split).
_base_ = './busi_semi.py'

data_root = 'data/TN3K'
split_file = 'data/TN3K/splits/split_0.125_seed0.json'
tn3k_dataset = dict(
    type='MultiTaskAnnotationDataset',
    data_root=data_root,
    ann_file='tn3k.jsonl',
    split_file=split_file,
    metainfo=dict(
        cls_classes=('benign', 'malignant'),
        lesion_classes=('benign', 'malignant')))
train_dataloader = dict(
    dataset=dict(datasets=[
        dict(subset='labeled', pipeline={{_base_.sup_pipeline}},
             **tn3k_dataset),
        dict(subset='unlabeled', pipeline={{_base_.unsup_pipeline}},
             **tn3k_dataset),
    ]))
val_dataloader = dict(dataset=dict(_delete_=True, subset='val',
                                   test_mode=True,
                                   pipeline={{_base_.test_pipeline}},
                                   **tn3k_dataset))
test_dataloader = dict(dataset=dict(_delete_=True, subset='test',
                                    test_mode=True,
                                    pipeline={{_base_.test_pipeline}},
                                    **tn3k_dataset))
