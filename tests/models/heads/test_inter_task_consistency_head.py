"""InterTaskConsistencyHead: which unlabelled views count as lesion views."""
import pytest
import torch

from hermes_mm.registry import MODELS

LOSS = dict(type='InterTaskConsistencyLoss')


def pseudo_labels(lesion_pixels, cls_probs, mixed):
    """PseudoLabels of len(lesion_pixels) 4x4 views whose teacher is sure
    of ``lesion_pixels[i]`` lesion pixels."""
    seg = torch.zeros(len(lesion_pixels), 2, 4, 4)
    seg[:, 0] = 1.0
    for i, n in enumerate(lesion_pixels):
        flat = seg[i].view(2, -1)
        flat[1, :n] = 1.0
        flat[0, :n] = 0.0
    labeler = MODELS.build(
        dict(
            type='DualThresholdPseudoLabeler',
            seg_num_classes=2,
            cls_num_classes=3,
            seg_threshold=dict(type='FixedDualThreshold', tau_low=0.6,
                               tau_high=0.9),
            cls_threshold=dict(type='FixedDualThreshold', tau_low=0.5,
                               tau_high=0.8)))
    return labeler(seg, torch.tensor(cls_probs),
                   torch.ones(len(lesion_pixels), 4, 4, dtype=torch.bool),
                   torch.tensor(mixed))


def test_pixels_only_by_default():
    head = MODELS.build(
        dict(type='InterTaskConsistencyHead', loss=LOSS, min_lesion_pixels=2))
    pseudo = pseudo_labels([3, 1, 5], [[0.1, 0.1, 0.8]] * 3,
                           [False, False, True])
    assert pseudo.lesion_images(1, 2).tolist() == [True, False, True]
    assert head.confident_lesion_images(pseudo).tolist() == [True] * 3


def test_confident_lesions_need_a_lesion_class_and_an_unmixed_view():
    head = MODELS.build(
        dict(
            type='InterTaskConsistencyHead',
            loss=LOSS,
            lesion_classes=(0, 1),
            min_lesion_confidence=0.7))
    # benign+malignant 0.9 / 0.6 (too unsure) / normal-leaning / mixed
    pseudo = pseudo_labels(
        [4, 4, 4, 4],
        [[0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8], [0.9, 0.1, 0.0]],
        [False, False, False, True])
    assert head.confident_lesion_images(pseudo).tolist() == [
        True, False, False, False
    ]


@pytest.mark.parametrize('kwargs', [
    dict(min_lesion_confidence=0.5),
    dict(min_lesion_confidence=1.5, lesion_classes=(0, 1)),
    dict(attention='gradcam'),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MODELS.build(dict(type='InterTaskConsistencyHead', loss=LOSS,
                          **kwargs))
