"""InterTaskConsistencyHead: which unlabelled views count as lesion views."""
import pytest
import torch

from hermes_mm.registry import MODELS

LOSS = dict(type='InterTaskConsistencyLoss')


@pytest.fixture
def pseudo_labels(build_labeller):
    """``pseudo_labels(lesion_pixels, cls_probs, mixed)``: PseudoLabels of
    len(lesion_pixels) 4x4 views whose teacher is sure of
    ``lesion_pixels[i]`` lesion pixels."""
    labeler = build_labeller(seg=(0.6, 0.9), cls=(0.5, 0.8))

    def make(lesion_pixels, cls_probs, mixed):
        return labeler(views(lesion_pixels), torch.tensor(cls_probs),
                       torch.ones(len(lesion_pixels), 4, 4,
                                  dtype=torch.bool),
                       torch.tensor(mixed))

    return make


def views(lesion_pixels):
    """Teacher pixel probabilities (B, 2, 4, 4): sure lesion on the first
    ``lesion_pixels[i]`` pixels of view i, sure background elsewhere."""
    seg = torch.zeros(len(lesion_pixels), 2, 4, 4)
    seg[:, 0] = 1.0
    for i, n in enumerate(lesion_pixels):
        flat = seg[i].view(2, -1)
        flat[1, :n] = 1.0
        flat[0, :n] = 0.0
    return seg


def test_pixels_only_by_default(pseudo_labels):
    head = MODELS.build(
        dict(type='InterTaskConsistencyHead', loss=LOSS, min_lesion_pixels=2))
    pseudo = pseudo_labels([3, 1, 5], [[0.1, 0.1, 0.8]] * 3,
                           [False, False, True])
    assert pseudo.lesion_images(1, 2).tolist() == [True, False, True]
    assert head.confident_lesion_images(pseudo).tolist() == [True] * 3


def test_confident_lesions_need_a_lesion_class_and_an_unmixed_view(
        pseudo_labels):
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
