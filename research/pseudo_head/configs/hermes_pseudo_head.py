# Hermes as shipped (configs/demo/hermes_synthetic.py) with the unlabelled
# image pseudo-labels training a separate pseudo head instead of the main
# classification head (research/pseudo_head/README.md; amendment 31). Run
# from the repository root with PYTHONPATH=. (custom_imports below).
_base_ = '../../../configs/demo/hermes_synthetic.py'

custom_imports = dict(
    imports=['hermes_mm', 'research.pseudo_head.pseudo_head'],
    allow_failed_imports=False)
# pseudo_cls_head=None: a fresh copy of the main head's config
model = dict(type='PseudoHeadHermes', pseudo_cls_head=None)
