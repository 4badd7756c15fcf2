"""Tests of hermes_mm.utils.cfg_options: ``--cfg-options`` keys are
checked against the config and the classes it builds, before building."""
import types

import pytest
from mmengine.config import Config
from mmengine.hooks import CheckpointHook

import hermes_mm  # noqa: F401  (registers the components)
from hermes_mm.utils.cfg_options import (CfgOptionsError, check_built_hooks,
                                         check_cfg_options)

CFG = Config(dict(
    default_scope='mmseg',
    model=dict(type='EncoderDecoder',
               backbone=dict(type='ResNetV1c', depth=18),
               test_cfg=dict(mode='whole')),
    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
    train_dataloader=dict(batch_size=2, num_workers=0),
    randomness=dict(seed=0),
))


@pytest.mark.parametrize('key, fragments', [
    ('default_hooks.checkpoint.intervall',
     ["CheckpointHook ('default_hooks.checkpoint') has no argument "
      "'intervall'", "Did you mean 'interval'?"]),
    ('model.test_cfg.min_lesion_are',
     ["'model.test_cfg' has no key 'min_lesion_are'",
      "Did you mean 'min_lesion_area'"]),
    ('randomnes.seed', ["the top level has no key 'randomnes'",
                        "Did you mean 'randomness'?"]),
    ('model.backbone.depth.x', ["'model.backbone.depth' is int 18"]),
    ('train_dataloader.num_worker', ["Did you mean 'num_workers'"]),
])
def test_typos_are_refused_before_building(key, fragments):
    with pytest.raises(CfgOptionsError) as err:
        check_cfg_options(CFG, {key: 1})
    msg = str(err.value)
    assert msg.startswith(f'--cfg-options {key}: ')
    assert all(f in msg for f in fragments), msg
    assert '--allow-new-cfg-keys' in msg
    check_cfg_options(CFG, {key: 1}, allow_new=True)  # the explicit flag


@pytest.mark.parametrize('key', [
    'model.backbone.depth',  # existing
    'model.backbone.base_channels',  # an argument of ResNetV1c's base
    'model.test_cfg.min_lesion_area',  # read by MultiTaskSegmentor
    'randomness.deterministic', 'experiment_name',  # Runner arguments
    'env_cfg.dist_cfg.timeout',  # an open dict
    'default_hooks.checkpoint.max_keep_ckpts',
])
def test_known_keys_pass(key):
    check_cfg_options(CFG, {key: 1})


def test_checkpoint_hook_extra_arguments_fail_at_build():
    hook = CheckpointHook(interval=1, intervall=2)
    runner = types.SimpleNamespace(hooks=[hook])
    with pytest.raises(CfgOptionsError) as err:
        check_built_hooks(runner)
    assert "unknown argument(s) ['intervall']" in str(err.value)
    assert "Did you mean 'interval'?" in str(err.value)
    check_built_hooks(types.SimpleNamespace(hooks=[CheckpointHook()]))
