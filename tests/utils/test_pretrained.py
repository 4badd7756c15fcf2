"""ImageNet weights of the BUSI/TN3K configs (issue 17, point 4): resolved
as MMEngine does, found in torch's hub cache, and, offline, a one-line
error before training that names the local-file and from-scratch options.
No test touches the network: the download check is injected."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from hermes_mm.utils import pretrained
from hermes_mm.utils.pretrained import (PretrainedWeightsError,
                                        check_pretrained_weights,
                                        checkpoint_url, hub_cache_file,
                                        pretrained_checkpoints)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
URL = ('https://download.openmmlab.com/pretrain/third_party/'
       'resnet50_v1c-2cccc1ad.pth')
IMAGENET_CONFIGS = [
    ('hermes_busi.py', 'model.segmentor.backbone.init_cfg'),
    ('hermes_tn3k.py', 'model.segmentor.backbone.init_cfg'),
    ('supervised_busi.py', 'model.backbone.init_cfg'),
    ('supervised_tn3k.py', 'model.backbone.init_cfg'),
    ('ablations/hermes_busi_no_itas.py', 'model.segmentor.backbone.init_cfg'),
    ('baselines/fully_supervised_busi.py', 'model.backbone.init_cfg'),
]


def offline(url):
    return 'URLError: offline (test)'


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    return tmp_path / 'hub' / 'checkpoints'


@pytest.mark.parametrize('name, key', IMAGENET_CONFIGS)
def test_busi_tn3k_configs_start_from_imagenet(name, key):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    assert pretrained_checkpoints(cfg.model) == [
        (key, 'open-mmlab://resnet50_v1c')]


def test_demo_configs_need_no_weights():
    for name in ('demo/hermes_synthetic.py', 'demo/supervised_synthetic.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        assert pretrained_checkpoints(cfg.model) == []
        assert check_pretrained_weights(cfg, fetch_error=offline) == []


def test_resolved_like_mmengine():
    assert checkpoint_url('open-mmlab://resnet50_v1c') == URL
    assert checkpoint_url('openmmlab://resnet50_v1c') == URL
    assert checkpoint_url('torchvision://resnet50').startswith('https://')
    assert checkpoint_url('https://x.org/a/w.pth') == 'https://x.org/a/w.pth'
    assert checkpoint_url('weights/r50.pth') is None
    with pytest.raises(PretrainedWeightsError, match='not a known'):
        checkpoint_url('open-mmlab://no_such_model')
    assert hub_cache_file(URL) == osp.join(torch.hub.get_dir(), 'checkpoints',
                                           'resnet50_v1c-2cccc1ad.pth')


def test_offline_error_names_both_options(empty_hub):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'hermes_busi.py'))
    with pytest.raises(PretrainedWeightsError) as err:
        check_pretrained_weights(cfg, fetch_error=offline)
    message = str(err.value)
    assert '\n' not in message
    key = 'model.segmentor.backbone.init_cfg'
    assert f'--cfg-options {key}.checkpoint=/path/to/weights.pth' in message
    assert f'--cfg-options {key}=None' in message
    assert 'open-mmlab://resnet50_v1c' in message and URL in message
    assert str(empty_hub / 'resnet50_v1c-2cccc1ad.pth') in message
    # the from-scratch option the message names does train without weights
    cfg.merge_from_dict({key: None})
    assert check_pretrained_weights(cfg, fetch_error=offline) == []


def test_cached_or_local_weights_pass(empty_hub, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'supervised_busi.py'))
    empty_hub.mkdir(parents=True)
    cached = empty_hub / 'resnet50_v1c-2cccc1ad.pth'
    cached.write_bytes(b'x')
    assert check_pretrained_weights(cfg, fetch_error=offline) == [str(cached)]
    cached.unlink()
    # online: the URL is left to MMEngine's download
    assert check_pretrained_weights(cfg, fetch_error=lambda u: None) == [URL]
    local = tmp_path / 'r50.pth'
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': str(local)})
    with pytest.raises(PretrainedWeightsError, match='r50.pth.*not found'):
        check_pretrained_weights(cfg, fetch_error=offline)
    local.write_bytes(b'x')
    assert check_pretrained_weights(cfg, fetch_error=offline) == [str(local)]


def test_train_stops_before_training_with_one_line(empty_hub, tmp_path,
                                                   monkeypatch, load_script):
    """``python tools/train.py configs/hermes_busi.py`` offline: exit with
    the one-line error before any data or model is touched."""
    monkeypatch.setattr(pretrained, 'download_error', offline)
    monkeypatch.setenv('LOCAL_RANK', '0')
    train = load_script('tools/train.py')
    with pytest.raises(SystemExit) as err:
        train.main([osp.join(REPO, 'configs', 'hermes_busi.py'),
                    '--work-dir', str(tmp_path / 'work')])
    assert str(err.value).startswith('error: pretrained weights '
                                     'open-mmlab://resnet50_v1c')
    assert 'init_cfg=None' in str(err.value)
    assert not (tmp_path / 'work').exists()
