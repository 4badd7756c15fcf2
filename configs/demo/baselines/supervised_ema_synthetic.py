# Supervised baseline with EMA weights: the supervised model, validated,
# tested and saved with an exponential moving average of its weights
# (MMEngine's EMAHook), the way Hermes is tested with its EMA teacher. It
# separates what the EMA alone gives from what the unlabelled images give.
# Same 4 labelled images per step as Hermes; EMA decay and start as the
# Hermes demo teacher (0.99 after a 100-iteration warm-up).
_base_ = './supervised_matched_synthetic.py'

custom_hooks = [
    dict(type='EMAHook', momentum=0.01, update_buffers=True, begin_iter=100)
]
