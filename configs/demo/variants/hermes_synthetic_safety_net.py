# Hermes on the synthetic demo data with the validation-gated safety net
# (issue 20, item 5; opt-in until measured on several data styles):
# after every validation, a score (mean of the teacher's lesion Dice and
# accuracy) more than `tolerance` below the best seen so far halves every
# unlabelled loss weight and loads the best model state back
# (UnlabelledSafetyNetHook; docs/method.md section 3). Validations during
# the supervised warm-up count, so the reference is at least the supervised
# model's best validated score.
# tolerance 3.0: about one validation image in both metrics (the demo
# validation set has ~40 images: one image moves accuracy by ~2.5 points
# and the lesion Dice by ~3).
#   python tools/train.py configs/demo/variants/hermes_synthetic_safety_net.py
_base_ = '../hermes_synthetic.py'

custom_hooks = [
    dict(type='TeacherThresholdUpdateHook'),
    dict(
        type='UnlabelledSafetyNetHook',
        score_keys=('teacher/seg/dice_lesion', 'teacher/cls/accuracy'),
        tolerance=3.0,
        decay=0.5,
        restore_best=True),
]
