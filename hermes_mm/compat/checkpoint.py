"""Weights-only checkpoint loading for MMEngine checkpoints on torch >= 2.6.

Since PyTorch 2.6 ``torch.load`` defaults to ``weights_only=True``. MMEngine
0.10.7 saves a ``message_hub`` holding
:class:`mmengine.logging.HistoryBuffer` objects and numpy arrays/scalars, so
``--resume`` and ``load_from`` fail with "Unsupported global"
(https://github.com/open-mmlab/mmengine/issues/1594). Turning weights-only
off would let a checkpoint run arbitrary code, so instead we allow-list
exactly the classes MMEngine and hermes_mm put into checkpoints. hermes_mm's
own state (thresholds, queues, EMA teacher) is saved as tensors and Python
built-ins only, so it needs nothing more.

``HistoryBuffer.__getstate__`` also pickles its statistics methods, which
pickle as ``builtins.getattr(HistoryBuffer, 'mean')``. A general ``getattr``
would open the door to arbitrary attribute access, so the allow-listed
``builtins.getattr`` is :func:`restricted_getattr`: it resolves only
HistoryBuffer statistics methods and refuses everything else.
"""
import importlib
from typing import Any, List

import torch


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


def install() -> bool:
    """Allow-list :func:`checkpoint_safe_globals` for weights-only loads.

    Returns:
        bool: True if the allow-list was registered (torch >= 2.4).
    """
    if not supports_weights_only():
        return False
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    return True
