"""research/path_candidates: each candidate is shipped Hermes with exactly
the path element that amendment 25's oracle probe changed, and builds."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHIPPED = 'configs/demo/hermes_synthetic.py'
CANDIDATES = 'research/path_candidates/configs/'
ORACLE = 'research/oracle_labels/configs/'


@pytest.mark.parametrize('name,oracle,changed', [
    ('hermes_joint_bn.py', 'hermes_oracle_both_joint_bn.py',
     ['model.joint_student_forward']),
    ('hermes_mild_views.py', 'hermes_oracle_both_mild_views.py',
     ['model.cutmix_prob', 'train_dataloader.dataset.datasets']),
])
def test_candidate_is_shipped_hermes_plus_the_probed_element(
        config_diff, name, oracle, changed):
    assert config_diff(CANDIDATES + name, SHIPPED) == changed
    # the same change as the oracle probe's, relative to its own base
    assert config_diff(ORACLE + oracle,
                       ORACLE + 'hermes_oracle_both.py') == changed
    cfg = Config.fromfile(osp.join(REPO, CANDIDATES + name))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    assert model.joint_student_forward is (name == 'hermes_joint_bn.py')
    assert model.cutmix_prob == (0.0 if name == 'hermes_mild_views.py'
                                 else 0.5)
