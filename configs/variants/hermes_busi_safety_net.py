# Hermes on BUSI (1/8 labels) with the validation-gated safety net (see
# configs/demo/variants/hermes_synthetic_safety_net.py). The checkpoints
# carry the best model state too (twice the size) so that --resume is
# exact.
#   python tools/train.py configs/variants/hermes_busi_safety_net.py
_base_ = '../hermes_busi.py'

custom_hooks = [
    dict(
        type='TeacherThresholdUpdateHook',
        precision_window=50,
        no_pair_warning_iters=100),
    dict(
        type='UnlabelledSafetyNetHook',
        score_keys=('teacher/seg/dice_lesion', 'teacher/cls/accuracy'),
        tolerance=3.0,
        decay=0.5,
        restore_best=True),
]
