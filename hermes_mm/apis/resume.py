"""``--resume`` that never silently starts over, and a clear error when the
checkpoint no longer fits the model.

MMEngine's auto-resume (``resume=True`` without ``load_from``) reads
``<work_dir>/last_checkpoint``; when it is missing (nothing saved yet, a
mistyped ``--work-dir``, or a work_dir copied without it) MMEngine logs
"Auto resumed from the latest checkpoint None" and trains from scratch,
exit 0. :func:`resolve_resume` replaces that:

- ``--resume``: resume, or stop with :class:`NothingToResumeError`;
- ``--resume auto``: resume if there is a checkpoint, else start from
  scratch (logged);
- ``--resume PATH``: resume from that file (as in MMDetection).

The checkpoint is the one ``last_checkpoint`` names; if that file is
missing, or names a missing file, the newest *complete* ``iter_*.pth`` /
``epoch_*.pth`` of the work_dir is used instead, and the log says so.

After a backbone or channel change, resuming fails deep inside torch
(optimizer "parameter group that doesn't match the size", a tensor size
mismatch). :func:`check_resume_compatible` compares the checkpoint's
``state_dict`` with the model first and raises
:class:`CheckpointMismatchError` naming the mismatching keys and the
``model.*`` config values that differ from the config saved in the
checkpoint (read as literals with :mod:`ast`, never executed).
"""
import ast
import logging
import os
import os.path as osp
import re
import zipfile
from typing import Any, Dict, List, Optional, Tuple, Union

from mmengine.config import Config
from mmengine.logging import print_log

LAST_CHECKPOINT = 'last_checkpoint'
#: Scheduled checkpoints MMEngine's CheckpointHook writes.
_NUMBERED = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
#: How many keys / config values a message lists.
MAX_LISTED = 5


class NothingToResumeError(FileNotFoundError):
    """``--resume`` was given but the work_dir holds no checkpoint."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model built from the
    config."""


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete ``torch.save`` file (its zip central
    directory, written last, is readable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def newest_complete_checkpoint(work_dir: str) -> Tuple[Optional[str],
                                                       List[str]]:
    """The newest complete ``iter_*.pth`` (or ``epoch_*.pth``).

    Returns:
        tuple: (path or None, names of newer files skipped as incomplete).
    """
    try:
        names = os.listdir(work_dir)
    except OSError:
        return None, []
    numbered = sorted(
        ((int(m.group(2)), name) for name in names
         for m in [_NUMBERED.match(name)] if m),
        reverse=True)
    skipped = []
    for _, name in numbered:
        path = osp.join(work_dir, name)
        if is_complete_checkpoint(path):
            return path, skipped
        skipped.append(name)
    return None, skipped


def find_resume_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """The checkpoint to resume from, and how it was found (for the log).

    Args:
        work_dir (str): The run's work_dir.

    Returns:
        tuple: (path or None, explanation).
    """
    last = osp.join(work_dir, LAST_CHECKPOINT)
    why = f'{last!r} does not exist'
    if osp.isfile(last):
        with open(last, encoding='utf-8') as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            return named, f'{LAST_CHECKPOINT} names {named!r}'
        why = f'{last!r} names {named!r}, which does not exist'
    path, skipped = newest_complete_checkpoint(work_dir)
    if path is None:
        return None, why
    note = (f' (skipped incomplete newer file(s): {skipped})'
            if skipped else '')
    return path, (f'{why}; using the newest complete checkpoint '
                  f'{osp.basename(path)!r} of the work_dir{note}')


def resolve_resume(cfg: Config, resume: Union[bool, str]) -> Optional[str]:
    """Set ``cfg.resume`` / ``cfg.load_from`` from ``--resume``.

    Args:
        cfg (Config): The config, with ``work_dir`` set; changed in place.
        resume (bool | str): False (no resume), True (``--resume``: must
            resume), ``'auto'`` (resume if possible), or a checkpoint path.

    Returns:
        str | None: The checkpoint resumed from.

    Raises:
        NothingToResumeError: ``--resume`` and no checkpoint.
        FileNotFoundError: ``--resume PATH`` and no such file.
    """
    if resume is False or resume is None:
        cfg.resume = False
        return None
    if resume not in (True, 'auto'):
        if not osp.isfile(resume):
            raise FileNotFoundError(
                f'--resume {resume}: no such checkpoint file.')
        cfg.resume, cfg.load_from = True, resume
        return resume
    work_dir = osp.abspath(cfg.work_dir)
    path, how = find_resume_checkpoint(work_dir)
    if path is None:
        where = (f'work_dir {work_dir!r} does not exist'
                 if not osp.isdir(work_dir) else
                 f'work_dir {work_dir!r} holds no checkpoint ({how}, and '
                 f'no complete iter_*.pth / epoch_*.pth)')
        if resume == 'auto':
            print_log(f'--resume auto: nothing to resume ({where}); '
                      f'training from scratch.', logger='current')
            cfg.resume = False
            return None
        raise NothingToResumeError(
            f'--resume: nothing to resume, {where}. Check --work-dir (a '
            f'mistyped one is a new, empty folder), or pass --resume PATH; '
            f'use --resume auto to start from scratch when there is no '
            f'checkpoint.')
    cfg.resume = True
    if how.startswith(LAST_CHECKPOINT) and not cfg.get('load_from'):
        return path  # MMEngine's auto-resume reads the same file
    print_log(f'Resuming from {path!r}: {how}.', logger='current',
              level=logging.WARNING)
    cfg.load_from = path
    return path


# ----------------------------------------------------------------------
# checkpoint / model compatibility
# ----------------------------------------------------------------------
def _literal(node: ast.AST) -> Any:
    """A config value from its source: literals and ``dict(k=v)`` only."""
    if isinstance(node, ast.Call) and isinstance(
            node.func, ast.Name) and node.func.id == 'dict' and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys,
                                                         node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    return ast.literal_eval(node)


def saved_config(text: str) -> Dict[str, Any]:
    """Top-level values of a config text saved in a checkpoint
    (``meta['cfg']``), parsed without running it; values that are not
    literals are left out."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                isinstance(stmt.targets[0], ast.Name):
            try:
                out[stmt.targets[0].id] = _literal(stmt.value)
            except (ValueError, TypeError, SyntaxError):
                pass
    return out


def flatten(value: Any, prefix: str) -> Dict[str, Any]:
    """``{'a.b.0': 1, ...}``; tuples compare as lists."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f'{prefix}.{key}'))
        return out
    if isinstance(value, (list, tuple)):
        if not value:
            return {prefix: []}
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f'{prefix}.{i}'))
        return out
    return {prefix: value}


def model_config_changes(saved_text: Optional[str],
                         cfg: Config) -> List[str]:
    """``'model.backbone.depth: 18 (checkpoint) -> 50 (now)'`` lines."""
    if not isinstance(saved_text, str):
        return []
    old = saved_config(saved_text).get('model')
    if not isinstance(old, dict):
        return []
    old_flat = flatten(old, 'model')
    new_flat = flatten(cfg.to_dict().get('model', {}), 'model')
    missing = object()
    lines = []
    for key in sorted(set(old_flat) | set(new_flat)):
        before, after = old_flat.get(key, missing), new_flat.get(
            key, missing)
        if before != after:
            lines.append(
                f'{key}: '
                f'{"(absent)" if before is missing else repr(before)} '
                f'(checkpoint) -> '
                f'{"(absent)" if after is missing else repr(after)} (now)')
    return lines


def _listed(items: List[str]) -> str:
    more = (f', ... ({len(items) - MAX_LISTED} more)'
            if len(items) > MAX_LISTED else '')
    return ', '.join(items[:MAX_LISTED]) + more


def state_dict_mismatches(saved: Dict[str, Any],
                          current: Dict[str, Any]) -> List[str]:
    """What differs between two state dicts (shape, missing, unexpected).

    Returns:
        list[str]: One line per kind of difference (empty if they fit).
    """
    saved = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in saved.items()}
    shapes = [
        f'{k} {tuple(saved[k].shape)} (checkpoint) vs '
        f'{tuple(v.shape)} (model)' for k, v in current.items()
        if k in saved and hasattr(v, 'shape') and hasattr(saved[k], 'shape')
        and tuple(v.shape) != tuple(saved[k].shape)
    ]
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    lines = []
    if shapes:
        lines.append(f'{len(shapes)} tensor(s) of another shape: '
                     f'{_listed(shapes)}')
    if missing:
        lines.append(f'{len(missing)} model key(s) not in the checkpoint: '
                     f'{_listed(missing)}')
    if unexpected:
        lines.append(f'{len(unexpected)} checkpoint key(s) not in the '
                     f'model: {_listed(unexpected)}')
    return lines


def check_resume_compatible(runner, checkpoint: Optional[str]) -> None:
    """Raise :class:`CheckpointMismatchError` if the weights of
    ``checkpoint`` do not fit ``runner.model``.

    Args:
        runner: A built MMEngine ``Runner``.
        checkpoint (str, optional): The checkpoint ``--resume`` will load;
            None: the one ``last_checkpoint`` of ``runner.work_dir`` names
            (MMEngine's auto-resume).
    """
    from mmengine.model import is_model_wrapper
    from mmengine.runner.checkpoint import _load_checkpoint
    if checkpoint is None:
        checkpoint = find_resume_checkpoint(runner.work_dir)[0]
        if checkpoint is None:
            return
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    saved = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    problems = state_dict_mismatches(saved, model.state_dict())
    if not problems:
        return
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    changes = model_config_changes(
        meta.get('cfg') if isinstance(meta, dict) else None, runner.cfg)
    changed = (f'Config values that differ from the checkpoint\'s: '
               f'{_listed(changes)}. ' if changes else
               'The checkpoint holds no readable config to compare with. ')
    raise CheckpointMismatchError(
        f'Cannot resume from {checkpoint!r}: its weights do not fit the '
        f'model built from the config. ' + changed + '; '.join(problems) +
        '. Resume with the config the checkpoint was trained with, or '
        'start a new work_dir (load_from=CHECKPOINT loads the matching '
        'weights only, without resuming).')


__all__ = [
    'CheckpointMismatchError', 'NothingToResumeError',
    'check_resume_compatible', 'find_resume_checkpoint',
    'is_complete_checkpoint', 'model_config_changes',
    'newest_complete_checkpoint', 'resolve_resume', 'saved_config',
    'state_dict_mismatches'
]
