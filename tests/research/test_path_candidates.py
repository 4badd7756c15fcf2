"""research/path_candidates: each candidate is shipped Hermes with exactly
the path element that amendment 25's oracle probe changed (the probes
themselves: ``test_oracle_labels.py``), and builds; the joint-forward
control of amendment 27 is the twin plus that element alone."""
import pytest
from mmengine.registry import init_default_scope

from hermes_mm.registry import MODELS
from tests.test_configs import assert_changes_exactly, load

SHIPPED = 'demo/hermes_synthetic.py'  # from configs/
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
    assert_changes_exactly(CANDIDATES + name, SHIPPED, changed)
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
