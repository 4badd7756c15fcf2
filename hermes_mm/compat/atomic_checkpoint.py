"""Crash-safe checkpoint saving for MMEngine 0.10.7 on local disks.

A run killed while MMEngine saves a checkpoint (SIGKILL from a scheduler,
out-of-memory killer, power loss) can lose every checkpoint of the run:

- ``save_checkpoint`` writes a local file with a plain
  ``open(path, 'wb').write(...)``, so a kill mid-write leaves a truncated
  ``iter_N.pth`` under its final name;
- ``CheckpointHook`` removes the oldest checkpoint (``max_keep_ckpts``)
  *before* writing the new one, so with ``max_keep_ckpts=1`` the only good
  checkpoint is gone while the new one is half-written, and
  ``last_checkpoint`` still names the deleted file: ``--resume`` fails;
- ``last_checkpoint`` itself is rewritten in place (truncate, then write);
- with ``save_best``, the previous ``best_*.pth`` is removed before the new
  one is written, so a kill in between leaves no best checkpoint.

:func:`install` fixes all four, for local paths only (other backends keep
MMEngine's behaviour):

- :func:`save_checkpoint` writes to a temporary file in the same folder
  (``.<name>.<pid>.<random>.tmp``), flushes and fsyncs it, then renames it
  over the final name with :func:`os.replace` (atomic on POSIX and Windows)
  and fsyncs the folder. A reader sees the old file or the complete new
  one, never a partial one. A kill leaves at most a hidden ``.tmp`` file,
  which no MMEngine code ever picks up.
- ``CheckpointHook._save_checkpoint_with_step`` is wrapped so the outdated
  checkpoints are removed only after the new one and ``last_checkpoint``
  are written (so ``max_keep_ckpts + 1`` files exist for a moment), and
  ``last_checkpoint`` is written the same atomic way. MMEngine already
  writes ``last_checkpoint`` only after the checkpoint itself.
- ``CheckpointHook._save_best_checkpoint`` is wrapped the same way: the
  previous best checkpoint is removed after the new one is written.

A full disk ends torch's zip writer with ``[enforce fail at
inline_container.cc] unexpected pos``, the ``No space left on device``
buried in the exception's context; :func:`atomic_save_checkpoint` raises
:class:`CheckpointDiskFullError` instead, naming the checkpoint, the free
space and that the previous checkpoints are intact.

The MMEngine code this fixes: ``mmengine/runner/checkpoint.py``
(``save_checkpoint`` -> ``LocalBackend.put``) and
``mmengine/hooks/checkpoint_hook.py`` (``_save_checkpoint_with_step``,
``_save_best_checkpoint``).
"""
import errno
import functools
import io
import os
import shutil
import os.path as osp
import uuid
from typing import Callable, List, Tuple

import torch

_PATCH_FLAG = '_hermes_atomic'
TMP_SUFFIX = '.tmp'
LAST_CHECKPOINT = 'last_checkpoint'


class CheckpointDiskFullError(OSError):
    """A checkpoint could not be written: no space left on the device."""


def _no_space(err: BaseException) -> bool:
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
    """
    tmp = temp_path_for(path)
    try:
        with open(tmp, 'xb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(osp.dirname(osp.abspath(path)))


def _is_local(filename: str, file_client_args, backend_args) -> bool:
    """Whether MMEngine would write ``filename`` with its local backend
    (a plain path and no other backend asked for)."""
    if file_client_args is not None or '://' in filename:
        return False
    backend = (backend_args or {}).get('backend', 'local')
    return backend == 'local' and not (backend_args or {}).get(
        'path_mapping')


def atomic_save_checkpoint(original: Callable) -> Callable:
    """Wrap MMEngine's ``save_checkpoint`` with an atomic local write."""

    @functools.wraps(original)
    def save_checkpoint(checkpoint,
                        filename,
                        file_client_args=None,
                        backend_args=None):
        if not _is_local(str(filename), file_client_args, backend_args):
            return original(checkpoint, filename, file_client_args,
                            backend_args)
        filename = str(filename)
        folder = osp.dirname(osp.abspath(filename))
        os.makedirs(folder, exist_ok=True)
        try:
            atomic_write(filename, lambda f: torch.save(checkpoint, f))
        except (OSError, RuntimeError) as err:
            if _no_space(err):
                raise disk_full_error(filename) from err
            raise

    setattr(save_checkpoint, _PATCH_FLAG, True)
    return save_checkpoint


class _AtomicTextFile(io.StringIO):
    """A text file that replaces ``path`` atomically when closed."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue().encode('utf-8')
            atomic_write(self.path, lambda f: f.write(data))
        super().close()

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if exc_type is not None:  # an error while writing: keep the old
            super().close()
            return
        self.close()


def _last_checkpoint_open(file, mode='r', *args, **kwargs):
    """``open`` for ``mmengine.hooks.checkpoint_hook``: writing
    ``last_checkpoint`` is atomic, everything else is the builtin."""
    if (isinstance(file, (str, os.PathLike)) and mode == 'w'
            and osp.basename(os.fspath(file)) == LAST_CHECKPOINT
            and not args and not kwargs):
        return _AtomicTextFile(os.fspath(file))
    return open(file, mode, *args, **kwargs)


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


def remove_after_save(original: Callable) -> Callable:
    """Wrap a ``CheckpointHook`` saving method (``_save_checkpoint_with_step``
    or ``_save_best_checkpoint``) so the checkpoints it replaces are removed
    after, not before, the new one is saved.

    If saving raises, nothing is removed (the old file stays on disk).
    Nested calls (the best-checkpoint save re-saves the latest one) defer
    into the outermost call.
    """

    @functools.wraps(original)
    def save_then_remove(self, *args, **kwargs):
        backend = self.file_backend
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            original(self, *args, **kwargs)
        finally:
            self.file_backend = backend
        for remove, path in deferred.pending:
            remove(path)

    setattr(save_then_remove, _PATCH_FLAG, True)
    return save_then_remove


#: ``CheckpointHook`` methods that remove a checkpoint before saving its
#: replacement in MMEngine 0.10.7 (``max_keep_ckpts``; ``save_best``)
REMOVING_SAVERS = ('_save_checkpoint_with_step', '_save_best_checkpoint')


def install() -> bool:
    """Make MMEngine's local checkpoint saving crash-safe (idempotent).

    Returns:
        bool: True (the patch is in place).
    """
    import mmengine.runner as runner_pkg
    from mmengine.hooks import checkpoint_hook
    from mmengine.runner import checkpoint as checkpoint_module
    from mmengine.runner import runner as runner_module
    if not getattr(checkpoint_module.save_checkpoint, _PATCH_FLAG, False):
        patched = atomic_save_checkpoint(checkpoint_module.save_checkpoint)
        # Runner.save_checkpoint and CheckpointHook._publish_model use the
        # names imported into their own modules / the package.
        for module in (checkpoint_module, runner_module, runner_pkg):
            module.save_checkpoint = patched
    hook_cls = checkpoint_hook.CheckpointHook
    for name in REMOVING_SAVERS:
        method = getattr(hook_cls, name)
        if not getattr(method, _PATCH_FLAG, False):
            setattr(hook_cls, name, remove_after_save(method))
    # Module-level name lookup finds this before the builtin ``open``; the
    # hook's only ``open`` call writes ``last_checkpoint``.
    checkpoint_hook.open = _last_checkpoint_open
    return True


__all__ = [
    'CheckpointDiskFullError', 'LAST_CHECKPOINT', 'TMP_SUFFIX',
    'atomic_save_checkpoint', 'atomic_write', 'disk_full_error', 'install',
    'remove_after_save', 'temp_path_for'
]
