"""``import hermes_mm`` (what every ``custom_imports`` user gets) replaces
no function or class of its host: the objects below are the very ones
MMEngine / MMCV / MMSeg define. Run in a fresh interpreter, because this
test session has imported hermes_mm (and the tools' explicit
``checkpoint_loading.install()``) long before."""
import subprocess
import sys
import textwrap

# MMSeg can only be imported on mmcv-lite once the fallback ``mmcv.ops`` is
# in place, which is the one thing the import is allowed to add; so the
# originals are taken from the defining modules after ``hermes_mm.compat``
# installed it, and compared with what a full ``import hermes_mm`` leaves.
SCRIPT = textwrap.dedent('''
    import hermes_mm.compat.mmcv_ops as ops
    ops.install()
    import mmcv.transforms
    import mmengine.hooks
    import mmengine.runner
    import mmengine.runner.checkpoint as ckpt
    import mmengine.runner.runner as runner_module
    import mmengine.hooks.checkpoint_hook as hook_module
    import mmseg.models.losses

    def snapshot():
        hook = mmengine.hooks.CheckpointHook
        return {
            'Runner.resume': mmengine.runner.Runner.resume,
            'Runner.load_checkpoint': mmengine.runner.Runner.load_checkpoint,
            'CheckpointHook': hook,
            'CheckpointHook._save_checkpoint_with_step':
                hook._save_checkpoint_with_step,
            'CheckpointHook._save_best_checkpoint':
                hook._save_best_checkpoint,
            'checkpoint_hook.open': vars(hook_module).get('open'),
            'save_checkpoint': ckpt.save_checkpoint,
            'runner.save_checkpoint': runner_module.save_checkpoint,
            'mmengine.runner.save_checkpoint':
                mmengine.runner.save_checkpoint,
            'load_url': ckpt.load_url,
            'local loader': ckpt.CheckpointLoader._schemes.get(''),
            'DiceLoss': mmseg.models.losses.DiceLoss,
            'DiceLoss.forward': mmseg.models.losses.DiceLoss.forward,
            'LoadImageFromFile': mmcv.transforms.LoadImageFromFile,
            'LoadImageFromFile.transform':
                mmcv.transforms.LoadImageFromFile.transform,
        }

    before = snapshot()
    import hermes_mm  # noqa: F401
    after = snapshot()
    changed = sorted(k for k in before if before[k] is not after[k])
    assert not changed, f'import hermes_mm replaced {changed}'
    assert after['checkpoint_hook.open'] is None
    assert hermes_mm.models.losses.IgnoreIndexDiceLoss is not None
    print('unchanged:', len(before))
''')


def test_import_hermes_mm_patches_nothing():
    out = subprocess.run([sys.executable, '-c', SCRIPT],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'unchanged: 15' in out.stdout
