"""Check ``--cfg-options`` keys against the loaded config before building.

MMEngine's ``Config.merge_from_dict`` accepts any key: a typo such as
``default_hooks.checkpoint.intervall=2`` reaches ``CheckpointHook`` (whose
``**kwargs`` are handed to ``Runner.save_checkpoint`` at the first save,
so training runs until then and crashes without a checkpoint), and
``model.test_cfg.min_lesion_are=0.5`` or ``randomnes.seed=5`` are kept and
never read. :func:`check_cfg_options` walks each key through the config
and accepts a key that is not there yet only

- in a dict with a ``type``, when the registered class (or, through its
  ``**kwargs``, a base class) takes an argument of that name;
- in a known dict without a ``type`` (:data:`TYPELESS_KEYS`: the Runner's
  own arguments at the top level, ``randomness``, ``env_cfg``, data
  loaders, loops, a model's ``test_cfg``) when the name is one its reader
  uses, or anywhere in a dict meant to be open (:data:`OPEN_DICTS`);
- anywhere with ``allow_new=True`` (``tools/train.py
  --allow-new-cfg-keys``).

Otherwise it raises :class:`CfgOptionsError` naming the key, what exists
there and the closest names. :func:`check_built_hooks` then rejects
``CheckpointHook`` arguments it would only pass on at the first save.
"""
import difflib
import inspect
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

from mmengine.config import Config

#: Dicts without a ``type`` whose reader is known: path regex -> names it
#: reads (besides the keys the config already has). MMEngine's loops and
#: data loaders are added from their signatures by :func:`_typeless_keys`.
TYPELESS_KEYS: Dict[str, Sequence[str]] = {
    r'randomness': ('seed', 'deterministic', 'diff_rank_seed'),
    r'env_cfg': ('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'),
    r'env_cfg\.mp_cfg': ('mp_start_method', 'opencv_num_threads'),
    r'auto_scale_lr': ('enable', 'base_batch_size'),
    r'custom_imports': ('imports', 'allow_failed_imports'),
    r'default_hooks': ('runtime_info', 'timer', 'logger', 'param_scheduler',
                       'checkpoint', 'sampler_seed', 'visualization'),
    # MMSeg's EncoderDecoder (mode, crop_size, stride) + hermes_mm's
    # MultiTaskSegmentor (min_lesion_area, lesion_classes)
    r'model(\.\w+)*\.test_cfg': ('mode', 'crop_size', 'stride',
                                 'min_lesion_area', 'lesion_classes'),
}
#: Dicts without a ``type`` that take any key (path regex).
OPEN_DICTS: Sequence[str] = (
    r'env_cfg\.dist_cfg',  # torch.distributed.init_process_group kwargs
    r'optim_wrapper\.paramwise_cfg(\..*)?',
    r'model(\.\w+)*\.train_cfg',
    r'.*\.metainfo',
    r'.*\.backend_args',
)

#: Longest key list a message shows.
_MAX_LISTED_KEYS = 20

#: Path patterns -> the registry a ``type`` there is looked up in first.
_REGISTRY_BY_PATH = (
    (r'.*pipeline.*|.*\.transforms(\..*)?', 'TRANSFORMS'),
    (r'(default|custom)_hooks(\..*)?', 'HOOKS'),
    (r'.*_dataloader\.(batch_)?sampler', 'DATA_SAMPLERS'),
    (r'.*_dataloader\.dataset.*', 'DATASETS'),
    (r'optim_wrapper\.optimizer', 'OPTIMIZERS'),
    (r'optim_wrapper', 'OPTIM_WRAPPERS'),
    (r'param_scheduler(\..*)?', 'PARAM_SCHEDULERS'),
    (r'.*_evaluator(\..*)?', 'METRICS'),
    (r'visualizer\.vis_backends(\..*)?', 'VISBACKENDS'),
    (r'visualizer', 'VISUALIZERS'),
    (r'log_processor', 'LOG_PROCESSORS'),
    (r'(train|val|test)_cfg', 'LOOPS'),
    (r'model(\..*)?', 'MODELS'),
)


class CfgOptionsError(KeyError):
    """A ``--cfg-options`` key the config does not have and nothing
    reads."""

    def __str__(self) -> str:  # KeyError would show the repr
        return str(self.args[0]) if self.args else ''


def _params(func) -> Optional[Set[str]]:
    """Keyword names of ``func``; None if it takes ``**kwargs``."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    names = {
        n for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return names - {'self'}


def accepted_arguments(cls: type) -> Optional[Set[str]]:
    """The keyword arguments ``cls(...)`` takes.

    ``**kwargs`` are followed up the MRO (assumed passed to the base
    class) until an ``__init__`` without them; reaching ``object`` ends
    the walk (it takes no keyword). Returns None when the names cannot be
    told (a signature that cannot be read).
    """
    names: Set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            return names
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            return None
        names |= {
            n for n, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        } - {'self'}
        if not any(p.kind == p.VAR_KEYWORD
                   for p in sig.parameters.values()):
            return names
    return names


def _registries():
    import mmseg.registry as registries
    return registries


def resolve_type(type_: Any, path: str) -> Optional[type]:
    """The class a config ``type`` at ``path`` builds (None if unknown)."""
    if isinstance(type_, type):
        return type_
    if not isinstance(type_, str):
        return None
    registries = _registries()
    order = [name for pattern, name in _REGISTRY_BY_PATH
             if re.fullmatch(pattern, path)]
    order += [name for name in dir(registries)
              if name.isupper() and name not in order]
    for name in order:
        try:
            cls = getattr(registries, name).get(type_)
        except Exception:  # e.g. an unknown scope prefix
            cls = None
        if isinstance(cls, type):
            return cls
    return None


def _typeless_keys(path: str) -> Optional[Set[str]]:
    """Names a known typeless dict at ``path`` is read with (None if not
    a known one)."""
    from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                                 LogProcessor, Runner, TestLoop, ValLoop)
    from torch.utils.data import DataLoader
    if path == '':
        return (_params(Runner.__init__) or set()) | {'runner_type'}
    loops = {
        'train_cfg': [IterBasedTrainLoop, EpochBasedTrainLoop],
        'val_cfg': [ValLoop],
        'test_cfg': [TestLoop],
        'log_processor': [LogProcessor],
    }
    if path in loops:
        names = {'type', 'by_epoch'}
        for cls in loops[path]:
            names |= accepted_arguments(cls) or set()
        return names - {'runner', 'dataloader', 'evaluator'}
    if re.fullmatch(r'(train|val|test)_dataloader', path):
        return (_params(DataLoader.__init__) or set()) | {
            'dataset', 'sampler', 'batch_sampler', 'collate_fn',
            'worker_init_fn'
        }
    for pattern, names in TYPELESS_KEYS.items():
        if re.fullmatch(pattern, path):
            return set(names)
    return None


def _closest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3,
                                      cutoff=0.6)
    return (f' Did you mean {" or ".join(repr(c) for c in close)}?'
            if close else '')


def _new_key_problem(node: dict, path: str, name: str) -> Optional[str]:
    """Why ``name`` may not be added to the dict ``node`` at ``path``
    (None if it may)."""
    where = f"'{path}'" if path else 'the top level'
    existing = [str(k) for k in node if k != '_delete_']
    if 'type' in node:
        cls = resolve_type(node['type'], path)
        if cls is None:
            return None  # cannot tell what builds it
        accepted = accepted_arguments(cls)
        if accepted is None or name in accepted:
            return None
        return (f'{cls.__name__} ({where}) has no argument {name!r}.'
                f'{_closest(name, accepted | set(existing))} Its '
                f'arguments: {sorted(accepted)}.')
    if any(re.fullmatch(p, path) for p in OPEN_DICTS):
        return None
    known = _typeless_keys(path)
    if known is not None and name in known:
        return None
    candidates = set(existing) | (known or set())
    listing = (f' Keys there: {sorted(candidates)}.'
               if len(candidates) <= _MAX_LISTED_KEYS else '')
    return (f'{where} has no key {name!r}, and nothing reads it there.'
            f'{_closest(name, candidates)}{listing}')


def cfg_option_problem(cfg: Any, key: str) -> Optional[str]:
    """Why ``key`` (dotted, list indices as numbers) does not fit ``cfg``;
    None if it does."""
    node = cfg.to_dict() if isinstance(cfg, Config) else cfg
    path: List[str] = []
    for part in key.split('.'):
        here = '.'.join(path)
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                return (f"'{here}' is a list of {len(node)} item(s); "
                        f'{part!r} is not an index of it.')
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                return _new_key_problem(node, here, part)
            node = node[part]
        else:
            return (f"'{here}' is {type(node).__name__} "
                    f'{repr(node)[:80]}, not a dict: it has no key '
                    f'{part!r}.')
        path.append(part)
    return None


def check_cfg_options(cfg: Config, options: Optional[Dict[str, Any]],
                      allow_new: bool = False) -> None:
    """Raise :class:`CfgOptionsError` for every ``--cfg-options`` key that
    names nothing (see the module docstring).

    Args:
        cfg (Config): The loaded config, before the options are merged.
        options (dict, optional): ``--cfg-options`` (``DictAction``).
        allow_new (bool): Accept new keys anywhere.
    """
    if not options or allow_new:
        return
    problems: List[str] = []
    for key in options:
        problem = cfg_option_problem(cfg, key)
        if problem:
            problems.append(f'--cfg-options {key}: {problem}')
    if problems:
        raise CfgOptionsError(
            '\n'.join(problems) + '\nNothing was built or trained. Fix the '
            'key, or pass --allow-new-cfg-keys if it is meant to be new.')


def check_built_hooks(runner) -> None:
    """Reject hook arguments the hooks only use at their first call.

    MMEngine's ``CheckpointHook`` keeps unknown keyword arguments and
    passes them to ``Runner.save_checkpoint`` at the first save, which
    then fails (``unexpected keyword argument``) after a whole checkpoint
    interval of training. Called once the Runner is built.

    Raises:
        CfgOptionsError: A ``CheckpointHook`` holds such arguments.
    """
    from mmengine.hooks import CheckpointHook
    for hook in runner.hooks:
        extra = sorted(getattr(hook, 'args', None) or {}) if isinstance(
            hook, CheckpointHook) else []
        if extra:
            accepted = accepted_arguments(CheckpointHook) or set()
            hints = ''.join(_closest(name, accepted) for name in extra)
            raise CfgOptionsError(
                f'{type(hook).__name__} (default_hooks.checkpoint) got '
                f'unknown argument(s) {extra}: it would pass them to '
                f'Runner.save_checkpoint at the first save, which fails '
                f'there.{hints} Its arguments: {sorted(accepted)}.')


__all__ = [
    'CfgOptionsError', 'OPEN_DICTS', 'TYPELESS_KEYS', 'accepted_arguments',
    'cfg_option_problem', 'check_built_hooks', 'check_cfg_options',
    'resolve_type'
]
