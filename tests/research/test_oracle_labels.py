"""research/oracle_labels: the oracle labeller cuts its zones from one-hot
hidden labels / masks (images, pixels, or both; the teacher's
probabilities where a mask is ignored), refuses data without hidden
annotations, and the two research configs build it inside Hermes."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.registry import MODELS
from tests.test_configs import assert_changes_exactly

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = osp.join(REPO, 'research', 'oracle_labels', 'configs')
IGNORE = 255


@pytest.fixture(scope='module')
def oracle_module():
    # what custom_imports does with PYTHONPATH=. (the configs' import)
    sys.path.insert(0, REPO)
    try:
        import importlib
        yield importlib.import_module('research.oracle_labels.oracle_labeler')
    finally:
        sys.path.remove(REPO)


def build(oracle_module, **flags):
    return MODELS.build(dict(
        type='OraclePseudoLabeler', seg_num_classes=2, cls_num_classes=3,
        seg_threshold=dict(type='FixedDualThreshold', tau_low=0.75,
                           tau_high=0.95),
        cls_threshold=dict(type='FixedDualThreshold', tau_low=0.6,
                           tau_high=0.9),
        ignore_index=IGNORE, lesion_index=1, **flags))


def teacher(hidden_labels=None, hidden_masks=None):
    """A teacher that is unsure everywhere: no image and no pixel would be
    reliable on its own."""
    return dict(seg_probs=torch.full((2, 2, 1, 4), 0.5),
                cls_probs=torch.full((2, 3), 1 / 3),
                region=torch.ones(2, 1, 4, dtype=torch.bool),
                mixed=torch.tensor([False, True]),
                hidden_masks=hidden_masks, hidden_labels=hidden_labels)


def test_image_oracle_makes_every_image_reliable_with_its_label(
        oracle_module):
    labeler = build(oracle_module, oracle_images=True)
    pseudo = labeler(**teacher(hidden_labels=torch.tensor([2, 0])))
    assert pseudo.cls_zones.reliable.tolist() == [True, True]
    assert pseudo.cls_zones.pseudo_label.tolist() == [2, 0]
    # the mixed view still has no image signal: CutMix is downstream
    assert pseudo.cls_reliable.tolist() == [True, False]
    # pixels untouched: the unsure teacher gives no pixel pseudo-label
    assert bool((pseudo.masks == IGNORE).all())


def test_pixel_oracle_uses_the_mask_and_the_teacher_where_ignored(
        oracle_module):
    labeler = build(oracle_module, oracle_images=False, oracle_pixels=True)
    masks = torch.tensor([[[0, 1, 1, IGNORE]], [[0, 0, 1, 0]]])
    pseudo = labeler(**teacher(hidden_masks=masks))
    assert pseudo.masks.tolist() == [[[0, 1, 1, IGNORE]], [[0, 0, 1, 0]]]
    # images untouched: the unsure teacher gives no image pseudo-label
    assert not bool(pseudo.cls_zones.reliable.any())
    labeler.diagnostics(pseudo)
    counts = labeler.pop_counts()
    assert counts['seg.precision'][0] == counts['seg.precision'][1] == 7


def test_oracle_needs_hidden_annotations(oracle_module):
    with pytest.raises(ValueError, match='hidden label'):
        build(oracle_module)(**teacher())
    with pytest.raises(ValueError, match='hidden label'):
        build(oracle_module)(**teacher(hidden_labels=torch.tensor([0, -1])))
    with pytest.raises(ValueError, match='hidden masks'):
        build(oracle_module, oracle_images=False,
              oracle_pixels=True)(**teacher())
    with pytest.raises(ValueError, match='plain'):
        build(oracle_module, oracle_images=False)


@pytest.mark.parametrize('name,images,pixels',
                         [('hermes_oracle_images.py', True, False),
                          ('hermes_oracle_pixels.py', False, True),
                          ('hermes_oracle_both.py', True, True)])
def test_research_configs_build_the_oracle_in_hermes(oracle_module, name,
                                                     images, pixels):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    assert 'research.oracle_labels.oracle_labeler' in \
        cfg.custom_imports.imports
    shipped = Config.fromfile(
        osp.join(REPO, 'configs', 'demo', 'hermes_synthetic.py'))
    # only the labeller's type and flags differ from Hermes as shipped
    labeler = cfg.model.pseudo_labeler.to_dict()
    assert (labeler.pop('type'), labeler.pop('oracle_images'),
            labeler.pop('oracle_pixels')) == ('OraclePseudoLabeler', images,
                                              pixels)
    assert labeler == {k: v for k, v in
                       shipped.model.pseudo_labeler.to_dict().items()
                       if k != 'type'}
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    assert isinstance(model.pseudo_labeler,
                      oracle_module.OraclePseudoLabeler)
    assert (model.pseudo_labeler.oracle_images,
            model.pseudo_labeler.oracle_pixels) == (images, pixels)


def test_path_probes_change_only_their_own_element():
    """The path probes of amendment 25 are oracle_both plus exactly one
    change: the joint BN forward, or the strong view made the weak one
    (no photometric transform, no CutMix) with the labelled dataset and
    the unlabelled geometry untouched."""
    rel = '../research/oracle_labels/configs/'  # from configs/
    assert_changes_exactly(rel + 'hermes_oracle_both_joint_bn.py',
                           rel + 'hermes_oracle_both.py',
                           ['model.joint_student_forward'])
    assert_changes_exactly(rel + 'hermes_oracle_both_mild_views.py',
                           rel + 'hermes_oracle_both.py',
                           ['model.cutmix_prob',
                            'train_dataloader.dataset.datasets'])
    both = Config.fromfile(osp.join(CONFIGS, 'hermes_oracle_both.py'))
    joint = Config.fromfile(
        osp.join(CONFIGS, 'hermes_oracle_both_joint_bn.py'))
    assert joint.model.joint_student_forward is True
    mild = Config.fromfile(
        osp.join(CONFIGS, 'hermes_oracle_both_mild_views.py'))
    assert mild.model.cutmix_prob == 0.0
    ours = mild.train_dataloader.dataset.datasets
    theirs = both.train_dataloader.dataset.datasets
    assert ours[0] == theirs[0]
    assert {k for k in ours[1] if ours[1][k] != theirs[1][k]} == {
        'pipeline'}
    assert ours[1].pipeline[:-1] == theirs[1].pipeline[:-1]
    branch = ours[1].pipeline[-1]
    assert branch.unsup_strong == branch.unsup_weak == [
        dict(type='PackMultiTaskInputs')]
    assert theirs[1].pipeline[-1].unsup_strong != branch.unsup_strong
