"""research/path_candidates: each candidate is Hermes as shipped when they
were measured (two student forwards) with exactly the path element that
amendment 25's oracle probe changed (the probes themselves:
``test_oracle_labels.py``), and builds; `joint_bn`, adopted, equals the
shipped config; the joint-forward control of amendment 27 is the twin plus
that element alone."""
import pytest
from mmengine.registry import init_default_scope

from hermes_mm.registry import MODELS
from tests.test_configs import assert_changes_exactly, changed_keys, load

SHIPPED = 'demo/hermes_synthetic.py'  # from configs/
# shipped Hermes when the candidates were measured (two student forwards)
MEASURED = 'demo/variants/hermes_synthetic_separate_forward.py'
TWIN = 'demo/baselines/hermes_unlabelled_off_synthetic.py'
CANDIDATES = '../research/path_candidates/configs/'


def build(name):
    init_default_scope('mmseg')
    return MODELS.build(load(CANDIDATES + name).model)


@pytest.mark.parametrize('name,changed', [
    ('hermes_joint_bn.py', ['model.joint_student_forward']),
    ('hermes_mild_views.py',
     ['model.cutmix_prob', 'train_dataloader.dataset.datasets']),
])
def test_candidate_is_shipped_hermes_plus_the_probed_element(name, changed):
    assert_changes_exactly(CANDIDATES + name, MEASURED, changed)
    model = build(name)
    assert model.joint_student_forward is (name == 'hermes_joint_bn.py')
    assert model.cutmix_prob == (0.0 if name == 'hermes_mild_views.py'
                                 else 0.5)


def test_joint_forward_control_is_the_twin_plus_the_joint_forward():
    name = 'hermes_joint_bn_unlabelled_off.py'
    assert_changes_exactly(CANDIDATES + name, TWIN,
                           ['model.joint_student_forward'])
    # and differs from joint_bn by the unlabelled weights alone
    assert_changes_exactly(
        CANDIDATES + name, CANDIDATES + 'hermes_joint_bn.py',
        ['model.unsup_weight', 'model.contrast_weight',
         'model.consistency_weight'])
    assert build(name).joint_student_forward is True


def test_adopted_joint_bn_is_the_shipped_config():
    assert changed_keys(CANDIDATES + 'hermes_joint_bn.py', SHIPPED) == set()
