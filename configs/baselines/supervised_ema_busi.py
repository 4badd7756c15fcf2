# Supervised baseline on BUSI with EMA weights (MMEngine's EMAHook), tested
# like Hermes with its EMA teacher: decay 0.999 from the end of Hermes's
# supervised warm-up (iteration 1000), 4 labelled images per step.
_base_ = './supervised_matched_busi.py'

custom_hooks = [
    dict(type='EMAHook', momentum=0.001, update_buffers=True,
         begin_iter=1000)
]
