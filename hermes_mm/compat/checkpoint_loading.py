"""Clear errors for unreadable or unsafe checkpoints; weights-only URLs.

MMEngine 0.10.7's local loader (``load_from_local``) passes torch's errors
through: a truncated file gives "PytorchStreamReader failed reading zip
archive" (an empty one a bare ``EOFError``) without the file name, and a
file refused by weights-only loading gives torch's advice to re-run with
``weights_only=False``, i.e. to run whatever the file contains.
:func:`load_local_checkpoint` replaces it (same scheme, every local path)
and raises

- :class:`UnsafeCheckpointError` (a ``pickle.UnpicklingError``) naming the
  file and the refused global (e.g. ``posix.system``), and
- :class:`CorruptCheckpointError` (a ``RuntimeError``) naming the file,
  for anything that is not a readable ``torch.save`` file.

Checkpoints given as URLs (``http(s)://``, and ``torchvision://`` /
``open-mmlab://`` which resolve to URLs) are loaded by
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to
False even on torch >= 2.6 (full unpickling of a downloaded file).
:func:`install` makes MMEngine pass ``weights_only=True`` there too.

Both use the allow-list of :mod:`hermes_mm.compat.checkpoint`.

Weights-only loading is not the whole story: ``Runner.resume`` passes a
checkpoint's ``meta['config']`` string (written by OpenMMLab 1.x tools,
never by MMEngine, which uses ``meta['cfg']``) to
``Config.fromstring(..., '.py')``, which *executes* it, only to read
``gpu_ids``. A checkpoint of plain strings and tensors could thus run code
on ``--resume``. :func:`install` wraps ``Runner.resume`` so that key is
dropped (with a warning) before MMEngine sees it; the GPU-count check it
fed is skipped for such checkpoints.
"""
import functools
import inspect
import logging
import os.path as osp
import pickle
import re
from typing import Callable, Optional

import torch
from mmengine.logging import print_log

from .checkpoint import supports_weights_only

_PATCH_FLAG = '_hermes_checked'
_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')
_DETAIL_RE = re.compile(r'WeightsUnpickler error:\s*([^\n]+)')
#: What :func:`hermes_mm.compat.checkpoint.restricted_getattr` refuses with.
_GETATTR_REFUSAL = 'checkpoint asks for getattr'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a Python object outside the weights-only
    allow-list; it was not loaded (nothing in it ran)."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, empty or not a ``torch.save`` file."""


def refused_global(err: BaseException) -> Optional[str]:
    """The global a weights-only load refused (``'posix.system'``), if the
    error names one."""
    match = _GLOBAL_RE.search(str(err))
    return match.group(1) if match else None


def explain_load_error(err: BaseException, source: str) -> Exception:
    """Turn an error of ``torch.load(source)`` into one that names
    ``source`` and says what was expected.

    Returns:
        Exception: :class:`UnsafeCheckpointError` for a weights-only
        refusal, else :class:`CorruptCheckpointError`.
    """
    text = str(err)
    name = refused_global(err)
    detail = _DETAIL_RE.search(text)
    detail = detail.group(1).strip() if detail else (
        text.strip().splitlines()[0] if text.strip() else '')
    detail = detail.split('. ')[0].rstrip('.')  # torch's advice follows
    if isinstance(err, pickle.UnpicklingError) and (
            name or _GETATTR_REFUSAL in text):
        what = f'the Python global {name!r}' if name else detail
        return UnsafeCheckpointError(
            f'Refusing to load checkpoint {source!r}: it contains {what}, '
            f'which is not on the weights-only allow-list '
            f'(hermes_mm.compat.checkpoint, see docs/security.md). Nothing '
            f'from the file was run. Checkpoints written by MMEngine or '
            f'hermes_mm never need it; the file may be malicious or come '
            f'from another tool. Load it with weights_only=False only if '
            f'you trust its source.')
    return CorruptCheckpointError(
        f'Checkpoint {source!r} could not be read: expected a complete file '
        f'written by torch.save (an MMEngine checkpoint), but it is '
        f'truncated, empty or not a checkpoint ({type(err).__name__}: '
        f'{detail[:200]}). A run killed while saving never leaves such '
        f'a file under hermes_mm (saving is atomic); re-copy the file, or '
        f'resume from an earlier checkpoint.')


#: What ``torch.load`` raises for a damaged or refused file.
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError,
                ValueError, AttributeError, ImportError)


def _weights_only_kwargs() -> dict:
    return dict(weights_only=True) if supports_weights_only() else {}


def load_local_checkpoint(filename: str, map_location=None):
    """MMEngine's ``load_from_local`` with errors that name the file.

    Args:
        filename (str): Local checkpoint path (``~`` is expanded).
        map_location: As in :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: It holds a global outside the allow-list.
        CorruptCheckpointError: It is not a readable checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename!r} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, **_weights_only_kwargs())
    except _LOAD_ERRORS as err:
        raise explain_load_error(err, filename) from err


def weights_only_load_url(load_url: Callable) -> Callable:
    """Wrap ``load_url`` (``torch.hub.load_state_dict_from_url``) to load
    weights-only and explain refusals."""

    @functools.wraps(load_url)
    def wrapped(url, *args, **kwargs):
        kwargs.update(_weights_only_kwargs())
        try:
            return load_url(url, *args, **kwargs)
        except _LOAD_ERRORS as err:
            raise explain_load_error(err, url) from err

    setattr(wrapped, _PATCH_FLAG, True)
    return wrapped


def resume_without_config_exec(original: Callable) -> Callable:
    """Wrap ``Runner.resume`` so ``meta['config']`` is never executed."""

    @functools.wraps(original)
    def resume(self, filename, *args, **kwargs):
        load = self.load_checkpoint

        def load_checkpoint(*load_args, **load_kwargs):
            checkpoint = load(*load_args, **load_kwargs)
            meta = (checkpoint.get('meta')
                    if isinstance(checkpoint, dict) else None)
            if isinstance(meta, dict) and 'config' in meta:
                meta.pop('config')
                print_log(
                    f'Checkpoint {filename!r} carries meta["config"] (an '
                    f'OpenMMLab 1.x config text); MMEngine would execute it '
                    f'as Python to read gpu_ids, so it was ignored.',
                    logger='current',
                    level=logging.WARNING)
            return checkpoint

        self.load_checkpoint = load_checkpoint
        try:
            return original(self, filename, *args, **kwargs)
        finally:
            del self.load_checkpoint  # back to the class method

    setattr(resume, _PATCH_FLAG, True)
    return resume


def install() -> bool:
    """Register :func:`load_local_checkpoint` for local paths and make URL
    loading weights-only (idempotent).

    Returns:
        bool: True if URL loading is weights-only too (its ``load_url``
        accepts ``weights_only``).
    """
    from mmengine.runner import Runner
    from mmengine.runner import checkpoint as checkpoint_module
    if not getattr(Runner.resume, _PATCH_FLAG, False):
        Runner.resume = resume_without_config_exec(Runner.resume)
    loader = checkpoint_module.CheckpointLoader
    if loader._schemes.get('') is not load_local_checkpoint:
        loader.register_scheme('', load_local_checkpoint, force=True)
    load_url = checkpoint_module.load_url
    if getattr(load_url, _PATCH_FLAG, False):
        return True
    try:
        accepts = 'weights_only' in inspect.signature(load_url).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts or not supports_weights_only():
        return False
    checkpoint_module.load_url = weights_only_load_url(load_url)
    return True


__all__ = [
    'CorruptCheckpointError', 'UnsafeCheckpointError', 'explain_load_error',
    'install', 'load_local_checkpoint', 'refused_global',
    'resume_without_config_exec', 'weights_only_load_url'
]
