"""Tests of DualThresholdPseudoLabeler and the PseudoLabels it returns:
masks, image usability, threshold updates, quality counts, zone ratios,
one-shot records and zones at a feature map's size."""
import copy

import pytest
import torch
import torch.nn.functional as F

import hermes_mm  # noqa: F401  (registers the labeller and the policies)
from hermes_mm.models.pseudo_labels import (AdaptiveDualThreshold,
                                            DualThresholdPseudoLabeler,
                                            PseudoLabels, confidence_stats,
                                            dual_threshold_zones,
                                            flatten_pixels)
from hermes_mm.registry import MODELS

IGNORE = 255
SEG_TAU = (0.75, 0.95)
CLS_TAU = (0.6, 0.9)
B, H, W = 4, 6, 8


def build(policy='FixedDualThreshold', **policy_kwargs):
    """A labeller built from the registry (2 pixel, 3 image classes)."""
    return MODELS.build(
        dict(
            type='DualThresholdPseudoLabeler',
            seg_num_classes=2,
            cls_num_classes=3,
            seg_threshold=dict(
                type=policy, tau_low=SEG_TAU[0], tau_high=SEG_TAU[1],
                **policy_kwargs),
            cls_threshold=dict(
                type=policy, tau_low=CLS_TAU[0], tau_high=CLS_TAU[1],
                **policy_kwargs),
            ignore_index=IGNORE,
            lesion_index=1))


def teacher_outputs(seed=0):
    """Random teacher outputs spread over every zone: (B, 2, H, W) pixel
    and (B, 3) image probabilities, a region with padding on images 1 and
    3, image 2 CutMixed."""
    g = torch.Generator().manual_seed(seed)
    seg_probs = (4 * torch.randn(B, 2, H, W, generator=g)).softmax(dim=1)
    cls_probs = (4 * torch.randn(B, 3, generator=g)).softmax(dim=1)
    region = torch.ones(B, H, W, dtype=torch.bool)
    region[1, 4:] = False
    region[3, :, 5:] = False
    mixed = torch.tensor([False, False, True, False])
    return dict(seg_probs=seg_probs, cls_probs=cls_probs, region=region,
                mixed=mixed)


def test_built_from_the_registry_with_its_policies():
    labeler = build()
    assert isinstance(labeler, DualThresholdPseudoLabeler)
    policies = labeler.policies()
    assert set(policies) == {'seg', 'cls'}
    assert policies['seg'] is labeler.seg_threshold
    assert policies['cls'] is labeler.cls_threshold
    assert labeler.seg_threshold.num_classes == 2
    assert labeler.cls_threshold.num_classes == 3
    # the default policies adapt
    default = MODELS.build(
        dict(type='DualThresholdPseudoLabeler', seg_num_classes=2,
             cls_num_classes=3))
    assert isinstance(default.seg_threshold, AdaptiveDualThreshold)
    assert isinstance(default.cls_threshold, AdaptiveDualThreshold)
    scalars = build().threshold_scalars()
    assert scalars['thr.seg.low.1'] == pytest.approx(SEG_TAU[0])
    assert scalars['thr.seg.high.0'] == pytest.approx(SEG_TAU[1])
    assert scalars['thr.cls.high.2'] == pytest.approx(CLS_TAU[1])
    assert len(scalars) == 2 * 2 + 2 * 3


def test_masks_are_the_argmax_inside_reliable_and_region_else_ignore():
    teacher = teacher_outputs()
    pseudo = build()(**teacher)
    assert isinstance(pseudo, PseudoLabels)
    masks = pseudo.masks
    assert masks.shape == (B, H, W) and masks.dtype == torch.long
    confidence, argmax = teacher['seg_probs'].max(dim=1)
    reliable = confidence >= SEG_TAU[1]
    inside = reliable & teacher['region']
    # non-vacuous: every case is present
    assert inside.any() and (reliable & ~teacher['region']).any()
    assert (~reliable & teacher['region']).any()
    assert (argmax[inside] == 1).any() and (argmax[inside] == 0).any()
    assert torch.equal(masks[inside], argmax[inside])
    assert (masks[~inside] == IGNORE).all()
    # the zones are those of the flattened probabilities
    assert torch.equal(pseudo.seg_zones.reliable, reliable.flatten())
    assert pseudo.seg_thresholds[0].tolist() == pytest.approx(
        [SEG_TAU[0]] * 2)
    assert pseudo.seg_thresholds[1].tolist() == pytest.approx(
        [SEG_TAU[1]] * 2)


def test_mixed_images_are_never_cls_reliable():
    teacher = teacher_outputs()
    # every image confidently class 0, 2, 1, 0
    teacher['cls_probs'] = torch.tensor([[0.98, 0.01, 0.01],
                                         [0.01, 0.01, 0.98],
                                         [0.01, 0.98, 0.01],
                                         [0.97, 0.02, 0.01]])
    teacher['mixed'] = torch.tensor([False, True, True, False])
    pseudo = build()(**teacher)
    assert pseudo.cls_zones.reliable.all()
    assert pseudo.cls_zones.pseudo_label.tolist() == [0, 2, 1, 0]
    assert pseudo.cls_usable.tolist() == [True, False, False, True]
    assert pseudo.cls_reliable.tolist() == [True, False, False, True]
    # nothing mixed: reliable images are cls_reliable
    teacher['mixed'] = torch.zeros(B, dtype=torch.bool)
    assert build()(**teacher).cls_reliable.all()


def test_update_moves_an_adaptive_policy_and_consumes_the_statistics():
    policy_kwargs = dict(momentum=0.5, margin=0.1, high_range=(0.5, 0.99),
                         low_floor=0.5)
    labeler = build('AdaptiveDualThreshold', **policy_kwargs)
    teacher = teacher_outputs()
    pseudo = labeler(**teacher)
    before = copy.deepcopy(labeler.state_dict())
    labeler.update(iteration=3)
    after = copy.deepcopy(labeler.state_dict())
    assert not torch.equal(after['seg_threshold.tau_high'],
                           before['seg_threshold.tau_high'])
    assert not torch.equal(after['cls_threshold.tau_high'],
                           before['cls_threshold.tau_high'])
    # exactly the policies' update on the batch's statistics (pixels in
    # the region only)
    for task, zones, classes, valid, tau in (
            ('seg', pseudo.seg_zones, 2, teacher['region'].flatten(),
             SEG_TAU),
            ('cls', pseudo.cls_zones, 3, None, CLS_TAU)):
        reference = AdaptiveDualThreshold(classes, *tau, **policy_kwargs)
        reference.update(*confidence_stats(zones, classes, valid), 3)
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(after[f'{task}_threshold.{name}'],
                                       value, msg=f'{task}.{name}')
    # the statistics were consumed: a second update without a forward
    # changes nothing
    labeler.update(iteration=4)
    for name, value in labeler.state_dict().items():
        assert torch.equal(value, after[name]), name


def test_pop_counts_returns_the_counts_once():
    labeler = build()
    teacher = teacher_outputs()
    assert labeler.pop_counts() == {}
    teacher['hidden_masks'] = (teacher['seg_probs'][:, 1] > 0.3).long()
    teacher['hidden_labels'] = torch.tensor([0, 1, 2, -1])
    labeler.diagnostics(labeler(**teacher))
    counts = labeler.pop_counts()
    assert {'seg.precision', 'seg.lesion.precision', 'seg.lesion.recall',
            'seg.lesion.as_background', 'cls.precision'} <= set(counts)
    for name, (num, den) in counts.items():
        assert isinstance(num, float) and isinstance(den, float), name
        assert 0 <= num <= den, name
    # reliable pixels in the region, all in the hidden annotation
    reliable = teacher['seg_probs'].max(dim=1).values >= SEG_TAU[1]
    assert counts['seg.precision'][1] == float(
        (reliable & teacher['region']).sum())
    assert labeler.pop_counts() == {}


def test_false_lesion_images_count_views_without_a_hidden_lesion():
    """Four 1 x 4 views. Hidden masks: 0 no lesion, 1 no lesion, 2 one
    lesion pixel, 3 no lesion but every pixel outside the region. Teacher
    lesion probabilities: one reliable lesion pixel on views 0, 2 and 3,
    an ambiguous one (0.9) on view 1. Only views 0 and 1 are normal views
    with a valid pixel, and only view 0 gets a reliable lesion label."""
    labeler = build()
    lesion = torch.tensor([[[0.99, 0.01, 0.01, 0.01]],
                           [[0.90, 0.01, 0.01, 0.01]],
                           [[0.99, 0.01, 0.01, 0.01]],
                           [[0.99, 0.01, 0.01, 0.01]]])
    hidden = torch.zeros(4, 1, 4, dtype=torch.long)
    hidden[2, 0, 3] = 1
    region = torch.ones(4, 1, 4, dtype=torch.bool)
    region[3] = False
    teacher = dict(seg_probs=torch.stack([1 - lesion, lesion], dim=1),
                   cls_probs=torch.full((4, 3), 1 / 3), region=region,
                   mixed=torch.zeros(4, dtype=torch.bool),
                   hidden_masks=hidden)
    labeler.diagnostics(labeler(**teacher))
    counts = labeler.pop_counts()
    assert counts['seg.false_lesion_images'] == (1.0, 2.0)
    # the lesion view's false pixel is a precision error, not a false
    # lesion image
    assert counts['seg.lesion.precision'] == (0.0, 2.0)


def test_zone_ratios_sum_to_one_per_task():
    labeler = build()
    teacher = teacher_outputs()
    stats = labeler.diagnostics(labeler(**teacher))
    for task in ('seg', 'cls'):
        ratios = [float(stats[f'zone.{task}.{zone}'])
                  for zone in ('reliable', 'ambiguous', 'unreliable')]
        assert sum(ratios) == pytest.approx(1.0), task
    # pixels: shares of the region
    reliable = teacher['seg_probs'].max(dim=1).values >= SEG_TAU[1]
    region = teacher['region']
    assert float(stats['zone.seg.reliable']) == pytest.approx(
        float((reliable & region).sum() / region.sum()))
    assert 0 < float(stats['zone.seg.unreliable']) < 1
    # images: 3 of 4 usable
    assert float(stats['zone.cls.usable']) == pytest.approx(0.75)


def test_record_only_when_asked_and_once():
    labeler = build()
    teacher = teacher_outputs()
    pseudo = labeler(**teacher)
    weak, strong = torch.randn(B, 3, H, W), torch.randn(B, 3, H, W)
    assert labeler.record_next is False and labeler.last_record is None
    labeler.record(pseudo, weak, strong)
    assert labeler.last_record is None
    labeler.record_next = True
    labeler.record(pseudo, weak, strong)
    assert labeler.record_next is False
    record = labeler.last_record
    assert set(record) == {
        'weak_inputs', 'strong_inputs', 'seg_pseudo_label', 'seg_reliable',
        'seg_ambiguous', 'region', 'cls_probs', 'cls_reliable',
        'cls_ambiguous', 'mixed'
    }
    assert all(value.device.type == 'cpu' for value in record.values())
    assert torch.equal(record['weak_inputs'], weak)
    assert torch.equal(record['strong_inputs'], strong)
    assert record['seg_reliable'].shape == (B, H, W)
    assert torch.equal(record['seg_pseudo_label'],
                       teacher['seg_probs'].argmax(dim=1))
    assert torch.equal(record['mixed'], teacher['mixed'])
    # the request was used up: the next batch is not recorded
    labeler.record(pseudo, strong, weak)
    assert labeler.last_record is record
    assert torch.equal(labeler.last_record['weak_inputs'], weak)


def test_pixel_zones_at_use_the_same_thresholds():
    labeler = build()
    teacher = teacher_outputs()
    # all-confident probabilities: every pooled cell is reliable
    lesion = torch.full((B, H, W), 0.01)
    lesion[:, :2] = 0.99
    teacher['seg_probs'] = torch.stack([1 - lesion, lesion], dim=1)
    teacher['region'] = torch.ones(B, H, W, dtype=torch.bool)
    pseudo = labeler(**teacher)
    zones, region = pseudo.pixel_zones_at((3, 4))
    assert zones.reliable.shape == (B * 3 * 4, ) and zones.reliable.all()
    assert region.all()
    assert zones.pseudo_label.view(B, 3, 4)[:, 0].eq(1).all()
    assert zones.pseudo_label.view(B, 3, 4)[:, 1:].eq(0).all()
    # confidence 0.9 is ambiguous under (0.75, 0.95) but reliable under
    # (0.75, 0.85): the zones follow the labeller's current thresholds
    teacher['seg_probs'] = torch.stack(
        [torch.full((B, H, W), 0.1), torch.full((B, H, W), 0.9)], dim=1)
    zones, _ = labeler(**teacher).pixel_zones_at((3, 4))
    assert zones.ambiguous.all()
    labeler.seg_threshold.tau_high.fill_(0.85)
    zones, _ = labeler(**teacher).pixel_zones_at((3, 4))
    assert zones.reliable.all()


def test_pixel_zones_at_pool_the_probabilities_and_the_region():
    labeler = build()
    teacher = teacher_outputs()
    pseudo = labeler(**teacher)
    zones, region = pseudo.pixel_zones_at((3, 4))
    pooled = F.adaptive_avg_pool2d(teacher['seg_probs'], (3, 4))
    want = dual_threshold_zones(flatten_pixels(pooled), *SEG_TAU)
    for name in ('pseudo_label', 'reliable', 'ambiguous', 'unreliable',
                 'negative_classes'):
        assert torch.equal(getattr(zones, name), getattr(want, name)), name
    # cells wholly inside the image only: image 1's last 2 rows (of 6) and
    # image 3's last 3 columns (of 8) are padding
    cells = region.view(B, 3, 4)
    assert cells[0].all() and cells[2].all()
    assert cells[1, :2].all() and not cells[1, 2].any()
    assert cells[3, :, :2].all() and not cells[3, :, 2:].any()


def test_lesion_images_count_reliable_lesion_pixels():
    teacher = teacher_outputs()
    lesion = torch.full((B, H, W), 0.01)
    lesion[0, :2, :2] = 0.99  # 4 reliable lesion pixels
    lesion[1, 0, 0] = 0.99  # 1
    lesion[2, :, :] = 0.9  # ambiguous: none
    lesion[3, 5, 7] = 0.99  # in the padding: none
    teacher['seg_probs'] = torch.stack([1 - lesion, lesion], dim=1)
    pseudo = build()(**teacher)
    assert pseudo.lesion_images(1, 1).tolist() == [True, True, False, False]
    assert pseudo.lesion_images(1, 2).tolist() == [True, False, False, False]
