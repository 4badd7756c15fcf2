"""Check every channel-dependent key of a multi-task model at build time.

Swapping the backbone (e.g. MMSeg's ``MobileNetV2`` for ``ResNetV1c``)
changes the channels of every level, and five keys follow from them: the
task neck's ``in_channels``, the decode (and auxiliary) head's
``in_channels``, the classification head's ``in_channels``, and Hermes'
``img_projector`` / ``pix_projector`` ``in_channels``. Left to the first
forward pass, each mismatch surfaces alone and some as raw matrix errors
(``mat1 and mat2 shapes cannot be multiplied``). Here the backbone (and
neck) run once on a small dummy batch, the task neck on their outputs, and
the value each key must take is read off the tensors:

- a key that is unset (absent or None) is filled in;
- every key that disagrees goes into one error that lists them all, as
  config keys and as ``--cfg-options``.

A backbone that cannot run on the dummy batch (e.g. one with a fixed input
size) is left unchecked: the check never blocks a model that would work.
"""
import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

#: Side of the dummy batch when the data pre-processor names no size, and
#: the largest side used (a cheap forward: about 0.1 s for ResNet-50).
DUMMY_SIZE = 64
MAX_DUMMY_SIZE = 128

#: Student configs already checked (their repr), so that HermesSegmentor's
#: check and its student's own check run one dummy forward, not two.
_CHECKED: set = set()


class ChannelMismatchError(ValueError):
    """Channel-dependent config keys disagree with the real channels."""


#: The student keys the check reads.
STUDENT_KEYS = ('backbone', 'neck', 'task_neck', 'decode_head',
                'auxiliary_head', 'cls_head', 'data_preprocessor')


def _plain(value: Any) -> Any:
    """Plain dicts/lists (ConfigDict and tuples compare as their
    contents)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_key(student_cfg: dict,
               img_projector_cfg: Optional[dict] = None,
               pix_projector_cfg: Optional[dict] = None,
               pix_in_index: int = 0) -> str:
    student = {k: student_cfg.get(k) for k in STUDENT_KEYS}
    return repr(_plain([student, img_projector_cfg, pix_projector_cfg,
                        pix_in_index]))


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, dict) else default


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _dummy_size(student_cfg: dict) -> Tuple[int, int]:
    size = _get(_get(student_cfg, 'data_preprocessor'), 'size')
    if not size:
        return DUMMY_SIZE, DUMMY_SIZE
    return tuple(min(int(s), MAX_DUMMY_SIZE) for s in size)[:2]


def _level_channels(student_cfg: dict) -> Optional[Tuple[list, list, int]]:
    """(backbone/neck level channels, task-neck seg level channels, cls
    vector width) from one dummy forward; None if the backbone cannot run
    it."""
    # One intra-op thread: a tiny forward on a busy 2-core machine took
    # 1 s with two contending threads, 0.03 s with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return _dummy_forward(student_cfg)
    finally:
        torch.set_num_threads(threads)


def _dummy_forward(student_cfg: dict) -> Optional[Tuple[list, list, int]]:
    """:func:`_level_channels` without the thread setting."""
    from hermes_mm.registry import MODELS
    try:
        # eval(): BN on one image; MMSeg's ResNet.train() returns None, so
        # no chaining
        backbone = MODELS.build(copy.deepcopy(student_cfg['backbone']))
        backbone.eval()
        height, width = _dummy_size(student_cfg)
        feats = backbone(torch.zeros(1, 3, height, width))
        if _get(student_cfg, 'neck'):
            neck = MODELS.build(copy.deepcopy(student_cfg['neck']))
            neck.eval()
            feats = neck(feats)
    except Exception as err:  # noqa: BLE001 - never block a working model
        print_log(f'channel check skipped: the backbone does not run on a '
                  f'dummy batch ({type(err).__name__}: {err})',
                  logger='current', level=10)
        return None
    feats = [feats] if torch.is_tensor(feats) else list(feats)
    levels = [int(f.shape[1]) for f in feats]
    task_cfg = copy.deepcopy(
        _get(student_cfg, 'task_neck') or dict(type='TaskSplitNeck'))
    if 'in_channels' in task_cfg:
        task_cfg['in_channels'] = levels
    task_neck = MODELS.build(task_cfg)
    task_neck.eval()
    task_feats = task_neck(feats)
    seg_levels = [int(f.shape[1]) for f in task_feats.seg_feats]
    return levels, seg_levels, int(task_feats.cls_vec.shape[1])


def _head_channels(head_cfg: dict, seg_levels: List[int]) -> Any:
    """``in_channels`` an MMSeg decode head needs for its ``in_index``."""
    index = _get(head_cfg, 'in_index', -1)
    if isinstance(index, (list, tuple)):
        return [seg_levels[i] for i in index]
    return seg_levels[index]


def expected_channels(student_cfg: dict,
                      img_projector_cfg: Optional[dict] = None,
                      pix_projector_cfg: Optional[dict] = None,
                      pix_in_index: int = 0
                      ) -> Optional[Dict[Tuple[str, ...], Any]]:
    """The ``in_channels`` each channel-dependent key must hold.

    Returns:
        dict or None: ``{key path: value}``; the path starts with
        ``'student'`` (``('student', 'decode_head')``) or names a Hermes
        projector (``('img_projector',)``). None when the backbone cannot
        run on a dummy batch.
    """
    channels = _level_channels(student_cfg)
    if channels is None:
        return None
    levels, seg_levels, cls_width = channels
    expected: Dict[Tuple[str, ...], Any] = {}
    if 'in_channels' in (_get(student_cfg, 'task_neck') or {}):
        expected[('student', 'task_neck')] = levels
    expected[('student', 'decode_head')] = _head_channels(
        student_cfg['decode_head'], seg_levels)
    aux = _get(student_cfg, 'auxiliary_head')
    for i, head in enumerate(aux if isinstance(aux, list) else [aux]):
        if head:
            path = ('student', 'auxiliary_head') + (
                (str(i), ) if isinstance(aux, list) else ())
            expected[path] = _head_channels(head, seg_levels)
    expected[('student', 'cls_head')] = cls_width
    if img_projector_cfg:
        expected[('img_projector', )] = cls_width
    if pix_projector_cfg:
        expected[('pix_projector', )] = seg_levels[pix_in_index]
    return expected


def _node(cfgs: Dict[str, Any], path: Tuple[str, ...]) -> dict:
    node = cfgs[path[0]]
    for part in path[1:]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def check_channels(student_cfg: dict,
                   img_projector_cfg: Optional[dict] = None,
                   pix_projector_cfg: Optional[dict] = None,
                   pix_in_index: int = 0,
                   student_prefix: str = 'model.',
                   projector_prefix: str = 'model.',
                   projector_names: Optional[Dict[str, str]] = None
                   ) -> None:
    """Fill in unset channel keys and raise one error for wrong ones.

    Modifies the configs in place: an unset ``in_channels`` (absent or
    None) of the task neck (if its type takes one), decode head, auxiliary
    head(s), classification head and projectors gets the value the
    backbone's outputs give.

    Args:
        student_cfg (dict): The ``MultiTaskSegmentor`` config (Hermes'
            ``segmentor``), with ``backbone``, optional ``neck``,
            ``task_neck``, ``decode_head``, ``cls_head``.
        img_projector_cfg (dict, optional): Hermes' image projector.
        pix_projector_cfg (dict, optional): Hermes' pixel projector.
        pix_in_index (int): Segmentation level of the pixel projector.
        student_prefix (str): Config path of the student in messages
            (``'model.'``, Hermes: ``'model.segmentor.'``).
        projector_prefix (str): Config path of the projectors' parent.
        projector_names (dict, optional): Config name of each projector
            in messages, e.g. ``{'img_projector': 'img_contrast.projector'}``
            (default: the keys themselves).

    Raises:
        ChannelMismatchError: Listing every key that disagrees with the
            value it must hold, as ``key=value`` and as ``--cfg-options``.
    """
    key = _check_key(student_cfg, img_projector_cfg, pix_projector_cfg,
                     pix_in_index)
    if key in _CHECKED:
        return
    expected = expected_channels(student_cfg, img_projector_cfg,
                                 pix_projector_cfg, pix_in_index)
    if expected is None:
        return
    cfgs = dict(student=student_cfg, img_projector=img_projector_cfg,
                pix_projector=pix_projector_cfg)
    wrong: List[Tuple[str, Any, Any]] = []
    for path, value in expected.items():
        node = _node(cfgs, path)
        if path[0] == 'student':
            name = student_prefix + '.'.join(path[1:] + ('in_channels', ))
        else:
            shown = (projector_names or {}).get(path[0], path[0])
            name = f'{projector_prefix}{shown}.in_channels'
        current = node.get('in_channels')
        if current is None:
            node['in_channels'] = value
            print_log(f'{name} inferred: {value}', logger='current')
        elif _as_list(current) != value:
            wrong.append((name, current, value))
    if wrong:
        levels = expected.get(('student', 'task_neck'))
        backbone = _get(student_cfg['backbone'], 'type', 'backbone')
        listing = '; '.join(f'{name}={_as_list(value)} (config: '
                            f'{_as_list(current)})'
                            for name, current, value in wrong)
        options = ' '.join(
            f'{name}=' + (str(_as_list(value)).replace(' ', '')
                          if isinstance(value, list) else str(value))
            for name, _, value in wrong)
        raise ChannelMismatchError(
            f'{len(wrong)} channel setting(s) do not match the outputs of '
            f'{backbone}' + (f' (levels {levels})' if levels else '') +
            f', measured with one dummy forward: set {listing}. As '
            f'--cfg-options: {options} (or leave them unset to have them '
            f'inferred).')
    # the filled configs pass, and so does the student alone (its own
    # check inside MultiTaskSegmentor, after HermesSegmentor's)
    _CHECKED.update({
        key,
        _check_key(student_cfg, img_projector_cfg, pix_projector_cfg,
                   pix_in_index),
        _check_key(student_cfg)
    })


__all__ = ['ChannelMismatchError', 'check_channels', 'expected_channels']
