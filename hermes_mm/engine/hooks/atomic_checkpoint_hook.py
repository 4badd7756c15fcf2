"""A ``CheckpointHook`` whose local checkpoints survive a kill mid-save.

A run killed while MMEngine 0.10.7's ``CheckpointHook`` saves (SIGKILL from
a scheduler, the out-of-memory killer, power loss) can lose every
checkpoint of the run:

- ``save_checkpoint`` writes a local file with ``LocalBackend.put``, a
  plain ``open(path, 'wb').write(...)``, so a kill mid-write leaves a
  truncated ``iter_N.pth`` under its final name;
- the hook removes the oldest checkpoint (``max_keep_ckpts``) *before*
  writing the new one, so with ``max_keep_ckpts=1`` the only good
  checkpoint is gone while the new one is half-written, and
  ``last_checkpoint`` still names the deleted file: ``--resume`` fails;
- ``last_checkpoint`` itself is rewritten in place (truncate, then write);
- with ``save_best``, the previous ``best_*.pth`` is removed before the new
  one is written, so a kill in between leaves no best checkpoint.

:class:`AtomicCheckpointHook` (``default_hooks.checkpoint.type`` in
``configs/_base_/schedules/schedule_20k.py``) fixes all four for local
paths; other storage backends keep MMEngine's behaviour:

- checkpoints are written through :class:`AtomicLocalBackend` (registered
  as the MMEngine file backend ``'hermes_atomic_local'``, selected through
  the hook's ``backend_args``): a temporary file in the same folder
  (``.<name>.<pid>.<random>.tmp``) is flushed, fsynced and renamed over
  the final name with :func:`os.replace` (atomic on POSIX and Windows). A
  reader sees the old file or the complete new one; a kill leaves at most
  a hidden ``.tmp`` file, which no MMEngine code picks up;
- outdated checkpoints (``max_keep_ckpts``) and the previous best one are
  removed only after the new one and ``last_checkpoint`` are written (so
  ``max_keep_ckpts + 1`` files exist for a moment);
- ``last_checkpoint`` is written the same atomic way.

A full disk raises :class:`CheckpointDiskFullError`, naming the checkpoint,
the free space and that the previous checkpoints are intact (torch's own
message buries ``No space left on device`` in a chained exception).

Nothing of MMEngine is replaced: a plain ``CheckpointHook`` in a config
keeps MMEngine's behaviour. The code this mirrors:
``mmengine/hooks/checkpoint_hook.py`` (``_save_checkpoint_with_step``,
``_save_best_checkpoint``) and ``mmengine/fileio/backends/local_backend.py``
(``put``).
"""
import errno
import io
import os
import os.path as osp
import shutil
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from hermes_mm.registry import HOOKS

#: Name of the atomic local file backend in MMEngine's backend table.
ATOMIC_LOCAL_BACKEND = 'hermes_atomic_local'
TMP_SUFFIX = '.tmp'
LAST_CHECKPOINT = 'last_checkpoint'


class CheckpointDiskFullError(OSError):
    """A checkpoint could not be written: no space left on the device."""


def _no_space(err: Optional[BaseException]) -> bool:
    """Whether ``err`` or an exception it chains is ENOSPC / EDQUOT."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC,
                                                      errno.EDQUOT):
            return True
        if 'No space left on device' in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _size(num_bytes: int) -> str:
    """``'1.5 GiB'``."""
    value, unit = float(num_bytes), 'B'
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            break
        value /= 1024
    return f'{value:.1f} {unit}'


def disk_full_error(path: str) -> CheckpointDiskFullError:
    """The error for a checkpoint that did not fit on its disk."""
    folder = osp.dirname(osp.abspath(path))
    try:
        usage = shutil.disk_usage(folder)
        space = (f'{_size(usage.free)} free of {_size(usage.total)} on the '
                 f'file system of {folder!r}')
    except OSError:
        space = f'free space of {folder!r} unknown'
    return CheckpointDiskFullError(
        errno.ENOSPC,
        f'No space left on device while saving checkpoint {path!r} '
        f'({space}). The partial file was removed and the previous '
        f'checkpoints and last_checkpoint are intact. Free space (or set '
        f'default_hooks.checkpoint.max_keep_ckpts, or a --work-dir on a '
        f'larger disk) and continue with --resume.', path)


def _fsync_dir(folder: str) -> None:
    """Persist a rename in ``folder`` (no-op where folders can't be
    opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path_for(path: str) -> str:
    """A fresh hidden temporary name next to ``path`` (same file system,
    so :func:`os.replace` is atomic)."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder,
                    f'.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}'
                    f'{TMP_SUFFIX}')


def atomic_write(path: str, write: Callable[[io.BufferedWriter],
                                            None]) -> None:
    """Write a file so that ``path`` is either untouched or complete.

    Args:
        path (str): Final local path.
        write (callable): Writes the content into the open binary file.

    Raises:
        CheckpointDiskFullError: The device ran out of space (the
            temporary file is removed, ``path`` is untouched).
    """
    tmp = temp_path_for(path)
    try:
        with open(tmp, 'xb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(err, (OSError, RuntimeError)) and _no_space(err):
            raise disk_full_error(path) from err
        raise
    _fsync_dir(osp.dirname(osp.abspath(path)))


class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` whose ``put``/``put_text`` replace the
    file atomically (:func:`atomic_write`)."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        filepath = os.fspath(filepath)
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        atomic_write(filepath, lambda f: f.write(obj))

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


# An addition to MMEngine's backend table under a new name (selected only
# through ``backend_args``); no existing backend or prefix changes.
register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend, force=True)


class _DeferredRemovals:
    """Proxy of a file backend that records ``remove``/``rmtree`` calls
    instead of running them; everything else goes to the backend."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.pending: List[Tuple[Callable, str]] = []

    def remove(self, path) -> None:
        self.pending.append((self.backend.remove, path))

    def rmtree(self, path) -> None:
        self.pending.append((self.backend.rmtree, path))

    def __getattr__(self, name):
        return getattr(self.backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose local checkpoints survive a kill mid-save.

    Same arguments and behaviour as :class:`mmengine.hooks.CheckpointHook`,
    except, for a local ``out_dir`` with no ``backend_args`` /
    ``file_client_args`` given: every checkpoint and ``last_checkpoint`` is
    written atomically, and the checkpoints it replaces (``max_keep_ckpts``,
    the previous ``save_best`` file) are removed after it is complete. If
    saving raises, nothing is removed. See the module docstring.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir or runner.work_dir
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(out_dir)):
            self.backend_args = dict(backend=ATOMIC_LOCAL_BACKEND)
        super().before_train(runner)

    @property
    def atomic(self) -> bool:
        """Whether checkpoints are written by :class:`AtomicLocalBackend`."""
        return (self.backend_args or {}).get('backend') == \
            ATOMIC_LOCAL_BACKEND

    @contextmanager
    def _removals_after_save(self) -> Iterator[None]:
        """Run the ``remove``/``rmtree`` calls of the block after it ends
        without an error (none if it raises). Nested blocks (the best
        checkpoint save re-saves the latest one) defer into the outermost.
        """
        if isinstance(self.file_backend, _DeferredRemovals):
            yield
            return
        backend = self.file_backend
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = backend
        for remove, path in deferred.pending:
            remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        # MMEngine 0.10.7's body, reordered: save, then last_checkpoint
        # (atomically; MMEngine truncates and rewrites it with ``open``),
        # then remove the outdated checkpoint.
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            # (the best-checkpoint save re-saves the same step)
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        # Model-parallel-like training pulls sharded states from every
        # rank; the files are the main process's job.
        if not is_main_process():
            return
        self.file_backend.put_text(
            self.last_ckpt, osp.join(runner.work_dir, LAST_CHECKPOINT))
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed: a directory
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.atomic:
            return super()._save_best_checkpoint(runner, metrics)
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)


__all__ = [
    'ATOMIC_LOCAL_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend',
    'CheckpointDiskFullError', 'LAST_CHECKPOINT', 'TMP_SUFFIX',
    'atomic_write', 'disk_full_error', 'temp_path_for'
]
