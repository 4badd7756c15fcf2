# hermes_oracle_both.py with the strong view made the weak one (no colour
# jitter, blur, speckle noise or CutOut) and no CutMix: how much do the
# strong perturbations cost the unlabelled path when its labels are right?
# (research/path_candidates/configs/hermes_mild_views.py with the oracle.)
_base_ = '../../path_candidates/configs/hermes_mild_views.py'

custom_imports = dict(
    imports=['hermes_mm', 'research.oracle_labels.oracle_labeler'],
    allow_failed_imports=False)
model = dict(
    pseudo_labeler=dict(
        type='OraclePseudoLabeler', oracle_images=True, oracle_pixels=True))
