"""Tests of :class:`hermes_mm.datasets.transforms.multi_branch.MultiBranch`
and of the recommended strong-view pipeline built around it."""
import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from hermes_mm.datasets.transforms.multi_branch import MultiBranch
# Registers RandomSpeckleNoise (used by the recommended strong pipeline).
from hermes_mm.datasets.transforms.random_speckle_noise import \
    RandomSpeckleNoise  # noqa: F401
from hermes_mm.registry import TRANSFORMS

BRANCHES = ['sup', 'unsup_weak', 'unsup_strong']
PACK = dict(type='PackSegInputs')  # stands in for PackMultiTaskInputs
H, W = 20, 24

# The strong view recommended for the Hermes configs, with MMSeg's packer.
STRONG_PIPELINE = [
    dict(
        type='RandomApply',
        transforms=[
            dict(type='mmpretrain.ColorJitter', brightness=0.5, contrast=0.5)
        ],
        prob=0.8),
    dict(
        type='mmpretrain.GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5),
    dict(type='RandomSpeckleNoise', prob=0.5, sigma_range=(0.05, 0.2)),
    dict(
        type='RandomCutOut',
        prob=0.5,
        n_holes=1,
        cutout_ratio=[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)],
        fill_in=(0, 0, 0)),
    PACK,
]


@pytest.fixture(autouse=True)
def mmseg_scope():
    # Transforms built inside wrappers (RandomResize -> Resize, RandomApply)
    # must resolve in MMSeg's scope, as in a config with default_scope.
    init_default_scope('mmseg')


def make_results(seed=0, hidden=False):
    """A loaded sample: an image whose pixels encode their position (all
    values >= 1 so CutOut holes filled with 0 are recognisable) and a mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:H, 0:W]
    img = np.stack([rows * 10 + 1, cols * 10 + 1,
                    rng.integers(1, 256, (H, W))], -1).astype(np.uint8)
    seg = (rng.random((H, W)) > 0.5).astype(np.uint8)
    seg_key = 'hidden_seg_map' if hidden else 'gt_seg_map'
    return {
        'img_path': f'img{seed}.png',
        'img': img,
        'img_shape': (H, W),
        'ori_shape': (H, W),
        seg_key: seg,
        'seg_fields': [seg_key],
        'reduce_zero_label': False,
    }


def build(**kwargs):
    return TRANSFORMS.build(dict(type='MultiBranch', branch_field=BRANCHES,
                                 **kwargs))


def test_labelled_sample_has_every_branch_with_none_where_absent():
    results = make_results()
    out = build(sup=[PACK])(copy.deepcopy(results))
    assert set(out) == {'inputs', 'data_samples'}
    assert list(out['inputs']) == BRANCHES
    assert list(out['data_samples']) == BRANCHES
    assert out['inputs']['unsup_weak'] is None
    assert out['data_samples']['unsup_strong'] is None
    sup = out['inputs']['sup']
    assert sup.shape == (3, H, W)
    assert torch.equal(sup, torch.from_numpy(results['img']).permute(2, 0, 1))
    gt = out['data_samples']['sup'].gt_sem_seg.data
    assert torch.equal(gt[0], torch.from_numpy(results['gt_seg_map']).long())


def test_branches_run_on_deep_copies():
    results = make_results()
    original = copy.deepcopy(results)

    def zero_in_place(results):
        results['img'][...] = 0
        return results

    out = build(unsup_weak=[PACK], unsup_strong=[zero_in_place, PACK])(results)
    assert torch.all(out['inputs']['unsup_strong'] == 0)
    assert torch.equal(out['inputs']['unsup_weak'],
                       torch.from_numpy(original['img']).permute(2, 0, 1))
    np.testing.assert_array_equal(results['img'], original['img'])


def test_pseudo_collate_of_mixed_batch_keeps_branch_structure():
    labelled = build(sup=[PACK])(make_results(0))
    unlabelled = build(unsup_weak=[PACK], unsup_strong=[PACK])(
        make_results(1, hidden=True))
    batch = pseudo_collate([labelled, unlabelled, unlabelled])
    assert set(batch) == {'inputs', 'data_samples'}
    assert list(batch['inputs']) == BRANCHES
    sup = batch['inputs']['sup']
    assert isinstance(sup, list) and len(sup) == 3
    assert isinstance(sup[0], torch.Tensor) and sup[1] is None
    assert batch['inputs']['unsup_weak'][0] is None
    assert all(
        isinstance(x, torch.Tensor) for x in batch['inputs']['unsup_weak'][1:])
    assert batch['data_samples']['unsup_strong'][0] is None


def test_weak_and_strong_views_share_geometry():
    pipeline = [
        dict(type='RandomResize', scale=(W, H), ratio_range=(1.0, 2.0),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=(12, 12)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='MultiBranch', branch_field=BRANCHES,
             unsup_weak=[PACK],
             unsup_strong=[
                 dict(type='RandomCutOut', prob=1.0, n_holes=1,
                      cutout_shape=(4, 4), fill_in=(0, 0, 0)), PACK
             ]),
    ]
    transforms = [TRANSFORMS.build(t) for t in pipeline]
    np.random.seed(0)
    top_left = make_results(0, hidden=True)['img'][:12, :12]
    moved = 0
    for trial in range(8):
        results = make_results(trial, hidden=True)
        for t in transforms:
            results = t(results)
        weak = results['inputs']['unsup_weak']
        strong = results['inputs']['unsup_strong']
        assert weak.shape == strong.shape == (3, 12, 12)
        hole = (strong == 0).all(0)
        assert 0 < hole.sum() <= 16
        # Outside the CutOut hole the strong view is pixel for pixel the weak
        # one: same resize, crop and flip.
        assert torch.equal(weak[:, ~hole], strong[:, ~hole])
        samples = results['data_samples']
        assert samples['unsup_weak'].flip == samples['unsup_strong'].flip
        assert samples['unsup_weak'].img_shape == (12, 12)
        moved += not torch.equal(
            weak[:2], torch.from_numpy(top_left[..., :2]).permute(2, 0, 1))
    assert moved > 0  # the geometry really was random


def test_recommended_strong_pipeline_changes_only_the_image():
    strong = [TRANSFORMS.build(t) for t in STRONG_PIPELINE[:-1]]
    np.random.seed(0)
    changed = 0
    for trial in range(10):
        results = make_results(trial)
        results['hidden_seg_map'] = 1 - results['gt_seg_map']
        results['seg_fields'].append('hidden_seg_map')
        before = copy.deepcopy(results)
        for t in strong:
            results = t(results)
        assert results['img'].shape == before['img'].shape
        assert results['img'].dtype == np.uint8
        changed += not np.array_equal(results['img'], before['img'])
        for key in ('gt_seg_map', 'hidden_seg_map'):
            np.testing.assert_array_equal(results[key], before[key])
        assert results['seg_fields'] == before['seg_fields']
    assert changed >= 8


def test_recommended_strong_pipeline_inside_multi_branch():
    mb = build(unsup_weak=[PACK], unsup_strong=STRONG_PIPELINE)
    np.random.seed(1)
    out = mb(make_results(0, hidden=True))
    weak, strong = out['inputs']['unsup_weak'], out['inputs']['unsup_strong']
    assert weak.shape == strong.shape == (3, H, W)
    assert strong.dtype == torch.uint8
    assert not torch.equal(weak, strong)


def test_branch_order_does_not_depend_on_keyword_order():
    a = MultiBranch(BRANCHES, unsup_strong=[PACK], unsup_weak=[PACK])
    assert list(a.branch_pipelines) == ['unsup_weak', 'unsup_strong']


@pytest.mark.parametrize('kwargs, match', [
    (dict(unsup=[PACK]), r"\['unsup'\] are not in `branch_field`"),
    (dict(), 'at least one branch pipeline'),
])
def test_bad_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiBranch(BRANCHES, **kwargs)


def test_repeated_branch_names_raise():
    with pytest.raises(ValueError, match='repeated'):
        MultiBranch(['sup', 'sup'], sup=[PACK])


def test_branch_without_packer_raises_with_branch_name():
    mb = build(sup=[PACK], unsup_strong=[dict(type='RandomSpeckleNoise')])
    with pytest.raises(ValueError, match="'unsup_strong' must end with a "
                       'packer'):
        mb(make_results())


def test_branch_returning_none_drops_the_sample():

    class Drop:

        def __call__(self, results):
            return None

    assert build(sup=[Drop(), PACK])(make_results()) is None
