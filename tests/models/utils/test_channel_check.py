"""Channel keys checked at build time (issue 17, point 6): MMSeg's
MobileNetV2 in a Hermes config gives one error naming all five keys and
their values (as config keys and --cfg-options); unset keys are inferred;
the shipped configs pass."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.models.utils import channel_check
from hermes_mm.models.utils.channel_check import (ChannelMismatchError,
                                                  check_channels,
                                                  expected_channels)
from hermes_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs', 'demo', 'hermes_synthetic.py')
SUPERVISED_DEMO = osp.join(REPO, 'configs', 'demo', 'supervised_synthetic.py')
# MMSeg's MobileNetV2 as its DeepLabV3+ configs use it (levels 24..320), at
# a quarter width here to stay cheap: levels 8, 8, 24, 80
# Config names of the projectors, as HermesSegmentor passes them.
PROJECTOR_NAMES = dict(img_projector='img_contrast.projector',
                       pix_projector='pix_contrast.projector')
MOBILENET = dict(type='MobileNetV2', widen_factor=0.25,
                 strides=(1, 2, 2, 2, 1, 2, 1),
                 dilations=(1, 1, 1, 1, 1, 1, 1), out_indices=(1, 2, 4, 6))
LEVELS = [8, 8, 24, 80]


@pytest.fixture(autouse=True)
def scope_and_fresh_cache(monkeypatch):
    init_default_scope('mmseg')
    monkeypatch.setattr(channel_check, '_CHECKED', set())


def hermes_model(backbone=None):
    model = copy.deepcopy(Config.fromfile(DEMO).model)
    if backbone is not None:
        model.segmentor.backbone = backbone
    return model


def projectors(model):
    """(img projector, pix projector, pix in_index) of a Hermes config."""
    return (model.img_contrast.projector, model.pix_contrast.projector,
            model.pix_contrast.get('in_index', 0))


def test_mobilenet_in_a_hermes_config_one_error_for_every_key():
    model = hermes_model(MOBILENET)
    with pytest.raises(ChannelMismatchError) as err:
        check_channels(model.segmentor, *projectors(model),
                       student_prefix='model.segmentor.',
                       projector_names=PROJECTOR_NAMES)
    message = str(err.value)
    assert '\n' not in message and '5 channel setting(s)' in message
    for key, value in (
            ('model.segmentor.task_neck.in_channels', LEVELS),
            ('model.segmentor.decode_head.in_channels', LEVELS),
            ('model.segmentor.cls_head.in_channels', 80),
            ('model.img_contrast.projector.in_channels', 80),
            ('model.pix_contrast.projector.in_channels', 8)):
        assert f'{key}={value} (config:' in message, key
        compact = str(value).replace(' ', '')
        assert f'{key}={compact}' in message.split('--cfg-options:')[1]
    # the old key names are gone from the message
    assert 'model.img_projector' not in message
    assert 'model.pix_projector' not in message
    # building the Hermes model raises the same error
    with pytest.raises(ChannelMismatchError) as built:
        MODELS.build(hermes_model(MOBILENET))
    assert str(built.value) == message
    # the printed --cfg-options fix the config
    fixed = hermes_model(MOBILENET)
    opts = message.split('--cfg-options: ')[1].split(' (or leave')[0]
    cfg = Config(dict(model=fixed))
    cfg.merge_from_dict({k: eval(v) for k, v in  # noqa: S307
                         (o.split('=') for o in opts.split())})
    check_channels(cfg.model.segmentor, *projectors(cfg.model))


def test_unset_keys_are_inferred_and_the_model_trains_a_step():
    model = hermes_model(MOBILENET)
    for part in ('task_neck', 'decode_head', 'cls_head'):
        model.segmentor[part].in_channels = None
    model.img_contrast.projector.in_channels = None
    del model.pix_contrast.projector['in_channels']
    check_channels(model.segmentor, *projectors(model))
    assert model.segmentor.task_neck.in_channels == LEVELS
    assert model.segmentor.decode_head.in_channels == LEVELS
    assert model.segmentor.cls_head.in_channels == 80
    assert model.img_contrast.projector.in_channels == 80
    assert model.pix_contrast.projector.in_channels == 8
    # the student alone (a supervised config) infers inside its build
    sup = copy.deepcopy(Config.fromfile(SUPERVISED_DEMO).model)
    sup.backbone = MOBILENET
    for part in ('task_neck', 'decode_head', 'cls_head'):
        sup[part].in_channels = None
    net = MODELS.build(sup)
    with torch.no_grad():
        out = net.forward_train(torch.zeros(2, 3, 64, 64))
    assert out.cls_logits.shape == (2, 3)


def test_supervised_build_names_model_keys():
    sup = copy.deepcopy(Config.fromfile(SUPERVISED_DEMO).model)
    sup.backbone = MOBILENET
    with pytest.raises(ChannelMismatchError,
                       match=r'model\.cls_head\.in_channels=80 \(config: '
                       r'256\)'):
        MODELS.build(sup)


@pytest.mark.parametrize('name',
                         ['hermes_busi.py', 'demo/hermes_synthetic.py'])
def test_shipped_configs_pass(name):
    model = Config.fromfile(osp.join(REPO, 'configs', name)).model
    expected = expected_channels(model.segmentor, *projectors(model))
    assert expected[('student', 'cls_head')] == \
        model.segmentor.cls_head.in_channels
    check_channels(model.segmentor, *projectors(model))


@MODELS.register_module(force=True)
class FixedInputBackbone(torch.nn.Module):
    """Runs on 224x224 inputs only (like a ViT without position-embedding
    interpolation)."""

    def forward(self, x):
        if x.shape[-2:] != (224, 224):
            raise ValueError('input must be 224x224')
        return [x]


def test_a_backbone_that_cannot_run_is_not_blocked():
    model = hermes_model(dict(type='FixedInputBackbone'))
    assert expected_channels(model.segmentor) is None
    check_channels(model.segmentor)  # no error: left to the forward pass
