"""MMSeg's own inferencer on a hermes_mm config (issue 17, point 8): it
keeps the annotation loader and has no class output, so it stops with an
error that points to HermesInferencer / tools/infer.py."""
import os.path as osp

import numpy as np
import pytest
from mmseg.apis import MMSegInferencer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_mmseg_inferencer_points_to_hermes_inferencer():
    inferencer = MMSegInferencer(
        osp.join(REPO, 'configs', 'demo', 'supervised_synthetic.py'),
        weights=None, device='cpu')
    with pytest.raises(KeyError) as err:
        inferencer(np.zeros((64, 64, 3), np.uint8))
    message = str(err.value)
    assert 'MMSegInferencer' in message
    assert 'hermes_mm.apis.HermesInferencer' in message
    assert 'tools/infer.py' in message
