"""Safe, explained checkpoint loading for MMEngine 0.10.7 on torch >= 2.6.

Weights-only allow-list (registered on ``import hermes_mm``, by
:func:`register_safe_globals`). Since PyTorch 2.6 ``torch.load`` defaults
to ``weights_only=True``. MMEngine 0.10.7 saves a ``message_hub`` holding
:class:`mmengine.logging.HistoryBuffer` objects and numpy arrays/scalars,
so ``--resume`` and ``load_from`` fail with "Unsupported global"
(https://github.com/open-mmlab/mmengine/issues/1594). Turning weights-only
off would let a checkpoint run arbitrary code, so instead we allow-list
exactly the classes MMEngine and hermes_mm put into checkpoints (an
addition to torch's allow-list; nothing of MMEngine is replaced).
hermes_mm's own state (thresholds, queues, EMA teacher) is saved as tensors
and Python built-ins only, so it needs nothing more.
``HistoryBuffer.__getstate__`` also pickles its statistics methods, which
pickle as ``builtins.getattr(HistoryBuffer, 'mean')``. A general
``getattr`` would open the door to arbitrary attribute access, so the
allow-listed ``builtins.getattr`` is :func:`restricted_getattr`: it
resolves only HistoryBuffer statistics methods and refuses everything else.

Clear errors, weights-only URLs and no executed config text (explicit:
:func:`install`, called by ``tools/train.py``, ``tools/test.py`` and
``tools/infer.py``; never on import). MMEngine's local loader
(``load_from_local``) passes torch's errors through: a truncated file gives
"PytorchStreamReader failed reading zip archive" (an empty one a bare
``EOFError``) without the file name, and a file refused by weights-only
loading gives torch's advice to re-run with ``weights_only=False``, i.e. to
run whatever the file contains. :func:`install` registers
:func:`load_local_checkpoint` for local paths, which raises

- :class:`UnsafeCheckpointError` (a ``pickle.UnpicklingError``) naming the
  file and the refused global (e.g. ``posix.system``), and
- :class:`CorruptCheckpointError` (a ``RuntimeError``) naming the file,
  for anything that is not a readable ``torch.save`` file.

Checkpoints given as URLs (``http(s)://``, and ``torchvision://`` /
``open-mmlab://`` which resolve to URLs) are loaded by
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to
False even on torch >= 2.6 (full unpickling of a downloaded file);
:func:`install` makes MMEngine pass ``weights_only=True`` there too.

Weights-only loading is not the whole story: ``Runner.resume`` passes a
checkpoint's ``meta['config']`` string (written by OpenMMLab 1.x tools,
never by MMEngine, which uses ``meta['cfg']``) to
``Config.fromstring(..., '.py')``, which *executes* it, only to read
``gpu_ids``. A checkpoint of plain strings and tensors could thus run code
on ``--resume``. Both loaders of :func:`install` drop that key (with a
warning) before MMEngine sees it; the GPU-count check it fed is skipped
for such checkpoints. ``Runner.resume`` itself is left as it is.

Other tools (e.g. MMSegmentation's own ``tools/train.py``) get the
allow-list from ``custom_imports`` alone and can call :func:`install`
themselves for the rest.
"""
import functools
import importlib
import inspect
import logging
import os.path as osp
import pickle
import re
from typing import Any, Callable, List, Optional

import torch
from mmengine.logging import print_log


def _numpy_globals() -> List[Any]:
    """The numpy callables needed to rebuild arrays and scalars.

    numpy 2 moved ``numpy.core`` to ``numpy._core``; pickles record the
    module of the numpy that wrote them, so both spellings are allowed.
    Both spellings resolve to one function whose ``__module__`` is the
    running numpy's, and torch keys a bare object by that ``__module__``, so
    each spelling is registered explicitly as an ``(object, 'path')`` pair;
    otherwise checkpoints written under numpy 1 (``numpy.core...``) would be
    refused under numpy 2.
    """
    import numpy as np
    found = [np.ndarray, np.dtype]
    for module_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in ('_reconstruct', 'scalar'):
            if hasattr(module, attr):
                found.append((getattr(module, attr), f'{module_name}.{attr}'))
    # ``np.dtype(float64)`` pickles as ``numpy.dtypes.Float64DType``.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found.extend(
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(
                getattr(dtypes, name), type))
    return found


def restricted_getattr(obj: Any, name: str) -> Any:
    """``getattr`` limited to :class:`HistoryBuffer` statistics methods.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    import pickle

    from mmengine.logging import HistoryBuffer
    allowed = set(HistoryBuffer._statistics_methods) | {
        'min', 'max', 'current', 'mean'
    }
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); weights-only '
        'loading only allows HistoryBuffer statistics methods. The file was '
        'not written by MMEngine/hermes_mm or has been tampered with.')


def checkpoint_safe_globals() -> List[Any]:
    """Every global a checkpoint written by MMEngine/hermes_mm may contain."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (restricted_getattr, 'builtins.getattr')
            ] + _numpy_globals()


def supports_weights_only() -> bool:
    """Whether this torch has the weights-only allow-list API."""
    return hasattr(torch.serialization, 'add_safe_globals')


def register_safe_globals() -> bool:
    """Allow-list :func:`checkpoint_safe_globals` for weights-only loads
    (what ``import hermes_mm`` calls; idempotent).

    Returns:
        bool: True if the allow-list was registered (torch >= 2.4).
    """
    if not supports_weights_only():
        return False
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    return True


def drop_config_text(checkpoint: Any, source: str) -> Any:
    """Remove ``meta['config']`` (OpenMMLab 1.x config text, which
    ``Runner.resume`` would execute) from a loaded checkpoint."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and 'config' in meta:
        meta.pop('config')
        print_log(
            f'Checkpoint {source!r} carries meta["config"] (an OpenMMLab '
            f'1.x config text); MMEngine would execute it as Python to read '
            f'gpu_ids, so it was ignored.',
            logger='current',
            level=logging.WARNING)
    return checkpoint


_PATCH_FLAG = '_hermes_checked'
_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')
_DETAIL_RE = re.compile(r'WeightsUnpickler error:\s*([^\n]+)')
#: What :func:`restricted_getattr` refuses with.
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
            f'(hermes_mm.compat.checkpoint_loading, see docs/security.md). '
            f'Nothing from the file was run. Checkpoints written by MMEngine '
            f'or hermes_mm never need it; the file may be malicious or come '
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
        checkpoint = torch.load(
            filename, map_location=map_location, **_weights_only_kwargs())
    except _LOAD_ERRORS as err:
        raise explain_load_error(err, filename) from err
    return drop_config_text(checkpoint, filename)


def weights_only_load_url(load_url: Callable) -> Callable:
    """Wrap ``load_url`` (``torch.hub.load_state_dict_from_url``) to load
    weights-only and explain refusals."""

    @functools.wraps(load_url)
    def wrapped(url, *args, **kwargs):
        kwargs.update(_weights_only_kwargs())
        try:
            checkpoint = load_url(url, *args, **kwargs)
        except _LOAD_ERRORS as err:
            raise explain_load_error(err, url) from err
        return drop_config_text(checkpoint, url)

    setattr(wrapped, _PATCH_FLAG, True)
    return wrapped


def install() -> bool:
    """Register :func:`load_local_checkpoint` for local paths and make URL
    loading weights-only (idempotent). Called by hermes_mm's tools; a
    library import never calls it.

    Returns:
        bool: True if URL loading is weights-only too (its ``load_url``
        accepts ``weights_only``).
    """
    from mmengine.runner import checkpoint as checkpoint_module
    register_safe_globals()
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
    'CorruptCheckpointError', 'UnsafeCheckpointError',
    'checkpoint_safe_globals', 'drop_config_text', 'explain_load_error',
    'install', 'load_local_checkpoint', 'refused_global',
    'register_safe_globals', 'restricted_getattr', 'supports_weights_only',
    'weights_only_load_url'
]
