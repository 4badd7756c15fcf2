# tiny_hermes.py, killed with SIGKILL half-way through writing the
# iteration-6 checkpoint (see fault_injection.KillDuringCheckpointHook).
_base_ = ['./tiny_hermes.py']

custom_hooks = [
    dict(type='DualThresholdPseudoLabelHook'),
    dict(type='RecordTrainingHook'),
    dict(type='KillDuringCheckpointHook', iteration=6),
]
