# Hermes as shipped until 2026-12-07 (two student forwards,
# configs/demo/variants/hermes_synthetic_separate_forward.py, the path the
# oracle runs measured) with the unlabelled images' hidden labels as image
# pseudo-labels: an upper bound on what better image pseudo-labels could
# give (research/oracle_labels/README.md).
# Run from the repository root with PYTHONPATH=. (custom_imports below).
_base_ = '../../../configs/demo/variants/hermes_synthetic_separate_forward.py'  # noqa: E501

custom_imports = dict(
    imports=['hermes_mm', 'research.oracle_labels.oracle_labeler'],
    allow_failed_imports=False)
model = dict(
    pseudo_labeler=dict(
        type='OraclePseudoLabeler', oracle_images=True, oracle_pixels=False))
