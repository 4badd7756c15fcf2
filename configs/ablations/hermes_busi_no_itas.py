# Ablation: Hermes on BUSI (1/8 labels) without the ITAS neck: both tasks read the backbone features
# directly (TaskSplitNeck); the consistency loss uses the classifier's CAM.
_base_ = '../hermes_busi.py'

model = dict(
    segmentor=dict(
        task_neck=dict(_delete_=True, type='TaskSplitNeck', cls_in_index=-1)),
    consistency=dict(attention='cam'))
