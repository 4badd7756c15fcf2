"""MMSeg's own inferencer on a hermes_mm config (issue 17, point 8): it
stops. On the shipped configs MMSeg itself stops first, as their pipelines
load images with ``LoadImageAsStored`` and it looks for
``LoadImageFromFile`` by name; on a pipeline with MMCV's loader it keeps
the annotation loader and has no class output, so it stops with an error
that points to HermesInferencer / tools/infer.py."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.apis import MMSegInferencer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


CONFIG = osp.join(REPO, 'configs', 'demo', 'supervised_synthetic.py')


def test_mmseg_inferencer_stops_on_the_shipped_configs():
    with pytest.raises(ValueError, match='LoadImageFromFile'):
        MMSegInferencer(CONFIG, weights=None, device='cpu')


def test_mmseg_inferencer_points_to_hermes_inferencer():
    cfg = Config.fromfile(CONFIG)
    for transform in cfg.test_dataloader.dataset.pipeline:
        if transform['type'] == 'LoadImageAsStored':
            transform['type'] = 'LoadImageFromFile'
    inferencer = MMSegInferencer(cfg, weights=None, device='cpu')
    with pytest.raises(KeyError) as err:
        inferencer(np.zeros((64, 64, 3), np.uint8))
    message = str(err.value)
    assert 'MMSegInferencer' in message
    assert 'hermes_mm.apis.HermesInferencer' in message
    assert 'tools/infer.py' in message
