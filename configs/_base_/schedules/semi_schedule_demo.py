# schedule_demo.py for teacher/student training (see semi_schedule_20k.py).
_base_ = './schedule_demo.py'

val_cfg = dict(_delete_=True, type='TeacherStudentValLoop')
default_hooks = dict(
    checkpoint=dict(save_best='teacher/seg/dice', rule='greater'),
    # also draw the teacher's pseudo-label zones every 200 iterations
    visualization=dict(draw=True, pseudo_label_interval=200))
custom_hooks = [dict(type='TeacherThresholdUpdateHook')]
