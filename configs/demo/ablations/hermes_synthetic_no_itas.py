# Ablation: Hermes on the synthetic demo data without the ITAS neck: both tasks read the backbone features
# directly (TaskSplitNeck); the consistency loss uses the classifier's CAM.
_base_ = '../hermes_synthetic.py'

model = dict(
    segmentor=dict(
        task_neck=dict(_delete_=True, type='TaskSplitNeck', cls_in_index=-1)),
    consistency=dict(attention='cam'))
