# Hermes on BUSI (1/8 labels) with the issue-20 guards on (opt-in until
# measured; see configs/demo/variants/hermes_synthetic_guarded.py):
# class-balanced image pseudo-labels (DistributionAlignment) and consistency
# only on views the teacher is >= 0.5 sure have a lesion (the lesion-share
# gate, the third guard measured with them, is in every Hermes config).
#   python tools/train.py configs/variants/hermes_busi_guarded.py
_base_ = '../hermes_busi.py'

model = dict(
    pseudo_labeler=dict(
        cls_alignment=dict(type='DistributionAlignment', momentum=0.999)),
    consistency=dict(min_lesion_confidence=0.5))
