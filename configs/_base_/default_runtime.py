# Runtime shared by every hermes_mm config.
default_scope = 'mmseg'
custom_imports = dict(imports=['hermes_mm'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to 'gloo' on machines without CUDA.
    dist_cfg=dict(backend='nccl'),
)
# TensorBoard / W&B get the same panels (every add_image) when the child
# config sets the visualizer's list itself:
#   visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
#                                   dict(type='TensorboardVisBackend')])
# A top-level `vis_backends = [...]` in a child config does NOT reach the
# visualizer below (it is resolved here); tools/train.py warns about it.
vis_backends = [dict(type='LocalVisBackend')]
# Panels: image | ground truth | prediction ("<class> p=0.87"), and with
# HermesVisualizationHook(pseudo_label_interval=N) the teacher's zones:
# reliable lesion (red), reliable background (blue), ambiguous (amber),
# unreliable (grey).
visualizer = dict(
    type='HermesVisualizer',
    vis_backends=vis_backends,
    name='visualizer',
    alpha=0.4)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
