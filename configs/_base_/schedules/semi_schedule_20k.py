# Schedule for teacher/student training: both networks are validated
# (teacher/..., student/... metrics) and the best teacher is kept.
_base_ = './schedule_20k.py'

val_cfg = dict(_delete_=True, type='TeacherStudentValLoop')
default_hooks = dict(
    checkpoint=dict(save_best='teacher/seg/dice', rule='greater'),
    # also draw the teacher's pseudo-label zones every 500 iterations
    visualization=dict(draw=True, pseudo_label_interval=500))
custom_hooks = [
    dict(
        type='TeacherThresholdUpdateHook',
        precision_window=50,
        no_pair_warning_iters=100)
]
