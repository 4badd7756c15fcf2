"""Hooks the reliability tests put into training runs (not a test module).

``python tests/reliability/fault_injection.py ARGS...`` registers them and
then runs ``tools/train.py ARGS...`` (``configs/tiny_hermes*.py`` use them),
with MMEngine's config formatting memoised (:func:`memoise_pretty_text`).

- :class:`RecordTrainingHook` appends, per iteration, the exact loss, the
  images of the batch and a digest of their pixels to
  ``<work_dir>/records.jsonl`` (kept across a resume: same work_dir).
- :class:`KillDuringCheckpointHook` SIGKILLs the process half-way through
  writing the checkpoint of a given iteration, as a scheduler or the OOM
  killer would: no Python cleanup runs.
"""
import builtins
import hashlib
import json
import os
import os.path as osp
import runpy
import signal
import sys

from mmengine.hooks import Hook

from hermes_mm.registry import HOOKS

RECORDS = 'records.jsonl'
TRAIN_SCRIPT = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
    'train.py')


def _digest(tensor) -> str:
    return hashlib.sha1(tensor.contiguous().numpy().tobytes()).hexdigest()


@HOOKS.register_module()
class RecordTrainingHook(Hook):
    """Record loss, image names and pixel digests of every iteration."""

    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        images, digests = [], []
        # pseudo_collate of MultiBranch samples: {branch: [item or None]}.
        inputs, samples = data_batch['inputs'], data_batch['data_samples']
        for branch in sorted(inputs):
            for tensor, sample in zip(inputs[branch], samples[branch]):
                if tensor is None:
                    continue
                images.append(
                    f'{branch}:{osp.basename(sample.metainfo["img_path"])}')
                digests.append(_digest(tensor))
        record = dict(
            iter=runner.iter + 1,
            loss=float(outputs['loss']),
            images=images,
            pixels=hashlib.sha1(''.join(digests).encode()).hexdigest())
        with open(osp.join(runner.work_dir, RECORDS), 'a') as f:
            f.write(json.dumps(record) + '\n')


@HOOKS.register_module()
class KillDuringCheckpointHook(Hook):
    """SIGKILL this process mid-way through saving one checkpoint.

    Args:
        iteration (int): 1-based iteration whose checkpoint is cut off.
    """

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 != self.iteration:
            return
        # MMEngine serialises into memory, then the file backend writes the
        # bytes: die half-way through writing them to the checkpoint's file
        # (``iter_N.pth``, or the atomic hook's hidden ``.iter_N.pth.*.tmp``).
        target = f'iter_{self.iteration}.pth'
        real_open = builtins.open

        def open_then_die(file, mode='r', *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if (isinstance(file, (str, os.PathLike)) and 'b' in mode
                    and ('w' in mode or 'x' in mode)
                    and target in osp.basename(os.fspath(file))):
                return _DieHalfway(f)
            return f

        builtins.open = open_then_die


class _DieHalfway:
    """A binary file whose first ``write`` puts half of the data on disk
    and then SIGKILLs the process."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, data) -> None:
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def memoise_pretty_text() -> None:
    """Format each config text once.

    MMEngine re-formats the whole config with yapf for the log, the dumped
    config and every checkpoint's meta: seconds per call on a shared CPU,
    most of a tiny run. The result depends only on the config's content,
    which is the cache key, so what is logged and saved is unchanged.
    """
    from mmengine.config import Config
    original = Config.pretty_text.fget
    cache = {}

    def pretty_text(self):
        key = repr(self._cfg_dict.to_dict())
        if key not in cache:
            cache[key] = original(self)
        return cache[key]

    Config.pretty_text = property(pretty_text)


if __name__ == '__main__':
    memoise_pretty_text()
    sys.argv = [TRAIN_SCRIPT] + sys.argv[1:]
    runpy.run_path(TRAIN_SCRIPT, run_name='__main__')
