"""Compatibility of the issue-15 HermesSegmentor with what came before:
old config keys fail with an error naming their replacement, checkpoints
with the old state-dict layout load (strictly) into the new modules, and
the old hook name still builds the hook."""
import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint
from mmengine.runner.checkpoint import load_state_dict as mme_load_state_dict

from hermes_mm.registry import HOOKS
from .test_hermes_segmentor import _build

# Old config key -> what its TypeError must name.
OLD_KEYS = {
    'seg_threshold': ('pseudo_labeler', dict(type='FixedDualThreshold')),
    'cls_threshold': ('pseudo_labeler', dict(type='FixedDualThreshold')),
    'img_projector': ('img_contrast', dict(type='ProjectionHead')),
    'img_contrast_loss': ('img_contrast',
                          dict(type='DualThresholdSupConLoss')),
    'pix_projector': ('pix_contrast', dict(type='PixelProjectionHead')),
    'pix_contrast_loss': ('pix_contrast', dict(type='PixelContrastLoss')),
    'pix_in_index': ('pix_contrast', 1),
    'consistency_loss': ('consistency',
                         dict(type='InterTaskConsistencyLoss')),
    'consistency_attention': ('consistency', 'cam'),
    'lesion_classes': ('consistency', [0, 1]),
    'min_lesion_pixels': ('consistency', 4),
    'lesion_free_background': ('removed', True),
    'background_index': ('removed', 0),
}

# New state-dict prefix -> the one checkpoints saved before 2026-12 use.
OLD_PREFIXES = {
    'pseudo_labeler.seg_threshold.': 'seg_threshold.',
    'pseudo_labeler.cls_threshold.': 'cls_threshold.',
    'img_contrast.projector.': 'img_projector.',
    'img_contrast.loss_module.': 'img_contrast_loss.',
    'pix_contrast.projector.': 'pix_projector.',
    'pix_contrast.loss_module.': 'pix_contrast_loss.',
}


# --------------------------------------------------------- config keys
@pytest.mark.parametrize('key', sorted(OLD_KEYS))
def test_old_config_key_names_its_replacement(key):
    new, value = OLD_KEYS[key]
    with pytest.raises(TypeError) as err:
        _build(**{key: value})
    message = str(err.value)
    assert f'model.{key} -> ' in message
    assert new in message.split(f'model.{key} -> ')[1]
    if new != 'removed':
        assert f'{new}=dict(' in message


def test_several_old_keys_are_named_in_one_error():
    with pytest.raises(TypeError) as err:
        _build(img_projector=dict(type='ProjectionHead'),
               consistency_loss=dict(type='InterTaskConsistencyLoss'),
               seg_threshold=dict(type='FixedDualThreshold'))
    message = str(err.value)
    for old, new in (('img_projector', 'img_contrast'),
                     ('consistency_loss', 'consistency'),
                     ('seg_threshold', 'pseudo_labeler')):
        assert f'model.{old} -> {new}=dict(' in message, old


# ---------------------------------------------------------- checkpoints
def old_layout(state):
    """A new state dict renamed to the pre-2026-12 layout, with every
    renamed value changed (thresholds 0.123, other floats + 1), so that a
    load that drops or misroutes them shows."""
    old = {}
    renamed = {}
    for key, value in state.items():
        for new, prefix in OLD_PREFIXES.items():
            if key.startswith(new):
                old_key = prefix + key[len(new):]
                if not value.dtype.is_floating_point:
                    value = value.clone()
                elif 'threshold.' in new:
                    value = torch.full_like(value, 0.123)
                else:
                    value = value + 1
                renamed[key] = old_key
                break
        else:
            old_key = key
        old[old_key] = value
    return old, renamed


@pytest.fixture(scope='module')
def old_checkpoint():
    """(new state dict of a built model, its old-layout version with
    changed values, {new key: old key} of the renamed entries)."""
    state = {k: v.clone() for k, v in _build().state_dict().items()}
    old, renamed = old_layout(state)
    # every renamed prefix is in the model
    for new in OLD_PREFIXES:
        assert any(k.startswith(new) for k in renamed), new
    assert not any(k.startswith(tuple(OLD_PREFIXES)) for k in old)
    assert {'seg_threshold.tau_low', 'cls_threshold.tau_high'} <= set(old)
    return state, old, renamed


def assert_arrived(model, state, old, renamed):
    """The loaded model holds the old checkpoint's values under the new
    names, and the changed values, not the built ones."""
    loaded = model.state_dict()
    old_to_new = {o: n for n, o in renamed.items()}
    assert set(loaded) == {old_to_new.get(k, k) for k in old}
    for key in loaded:
        assert torch.equal(loaded[key], old[renamed.get(key, key)]), key
    labeler = model.pseudo_labeler
    for policy in (labeler.seg_threshold, labeler.cls_threshold):
        assert torch.allclose(policy.tau_low, torch.tensor(0.123))
        assert torch.allclose(policy.tau_high, torch.tensor(0.123))
    for head in (model.img_contrast, model.pix_contrast):
        for name, value in head.projector.state_dict().items():
            if value.dtype.is_floating_point:
                prefix = 'img' if head is model.img_contrast else 'pix'
                want = state[f'{prefix}_contrast.projector.{name}'] + 1
                assert torch.equal(value, want), (prefix, name)


def test_old_state_dict_loads_strictly_with_model_load_state_dict(
        old_checkpoint):
    state, old, renamed = old_checkpoint
    fresh = _build()
    fresh.load_state_dict(dict(old), strict=True)
    assert_arrived(fresh, state, old, renamed)


def test_old_state_dict_loads_with_mmengine_load_state_dict(old_checkpoint):
    state, old, renamed = old_checkpoint
    fresh = _build()
    mme_load_state_dict(fresh, dict(old), strict=True)
    assert_arrived(fresh, state, old, renamed)


def test_old_checkpoint_file_loads_with_load_checkpoint(old_checkpoint,
                                                        tmp_path):
    state, old, renamed = old_checkpoint
    path = osp.join(tmp_path, 'old_layout.pth')
    torch.save(dict(state_dict=old, meta=dict()), path)
    fresh = _build()
    load_checkpoint(fresh, path, map_location='cpu', strict=True)
    assert_arrived(fresh, state, old, renamed)


def test_renaming_keeps_strict_loading_strict(old_checkpoint):
    _, old, _ = old_checkpoint
    extra = dict(old)
    extra['img_projector.not_a_parameter'] = torch.zeros(1)
    with pytest.raises(RuntimeError,
                       match='img_contrast.projector.not_a_parameter'):
        _build().load_state_dict(extra, strict=True)
    missing = {k: v for k, v in old.items() if k != 'seg_threshold.tau_low'}
    with pytest.raises(RuntimeError,
                       match=r'pseudo_labeler\.seg_threshold\.tau_low'):
        _build().load_state_dict(missing, strict=True)


def test_new_state_dict_round_trips():
    model = _build()
    with torch.no_grad():
        model.pseudo_labeler.seg_threshold.tau_high.fill_(0.97)
    fresh = _build()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(fresh.pseudo_labeler.seg_threshold.tau_high,
                          torch.tensor(0.97))


# ---------------------------------------------------------------- hooks
def test_old_hook_name_builds_the_same_hook():
    from hermes_mm.engine.hooks import (DualThresholdPseudoLabelHook,
                                        TeacherThresholdUpdateHook)
    init_default_scope('mmseg')
    new = HOOKS.build(dict(type='TeacherThresholdUpdateHook'))
    old = HOOKS.build(dict(type='DualThresholdPseudoLabelHook'))
    assert type(new) is type(old) is TeacherThresholdUpdateHook
    assert DualThresholdPseudoLabelHook is TeacherThresholdUpdateHook
    assert HOOKS.get('DualThresholdPseudoLabelHook') is \
        HOOKS.get('TeacherThresholdUpdateHook')
