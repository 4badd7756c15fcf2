"""mask_decides_lesion / check_lesion_classes: hand-made scores and masks."""
import pytest
import torch

from hermes_mm.models.utils import check_lesion_classes, mask_decides_lesion


def test_mask_picks_the_group_and_the_classifier_the_class():
    # classes: 0 benign, 1 malignant (lesion), 2 normal (lesion-free)
    scores = torch.tensor([
        [0.2, 0.1, 0.7],  # says normal, mask has a lesion -> benign
        [0.3, 0.6, 0.1],  # says malignant, mask has a lesion -> malignant
        [0.6, 0.3, 0.1],  # says benign, mask is empty -> normal
        [0.1, 0.2, 0.7],  # says normal, mask is empty -> normal
    ])
    has_lesion = torch.tensor([True, True, False, False])
    labels = mask_decides_lesion(scores, has_lesion, [0, 1])
    assert labels.tolist() == [0, 1, 2, 2]
    assert labels.dtype == torch.long
    # logits work the same way (argmax within the allowed group)
    assert torch.equal(
        mask_decides_lesion(scores.log(), has_lesion, [1, 0]), labels)


def test_several_lesion_free_classes():
    # classes 0, 2 lesion-free; 1, 3 lesion
    scores = torch.tensor([[0.4, 0.1, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]])
    labels = mask_decides_lesion(scores, torch.tensor([True, False]),
                                 [1, 3])
    assert labels.tolist() == [3, 2]


@pytest.mark.parametrize('bad', [[], [0, 0], [-1], [True], 'ab', 1, [0.5]])
def test_bad_lesion_classes_are_named(bad):
    with pytest.raises(ValueError, match='test_cfg.lesion_classes'):
        check_lesion_classes(bad)


def test_lesion_classes_must_leave_a_lesion_free_class():
    assert check_lesion_classes((1, 0), 3) == [0, 1]
    with pytest.raises(ValueError, match='every one of the 2'):
        check_lesion_classes([0, 1], 2)
    with pytest.raises(ValueError, match='must index the 3'):
        check_lesion_classes([0, 3], 3)
    with pytest.raises(ValueError, match=r'\(B, K\)'):
        mask_decides_lesion(torch.zeros(2, 3), torch.zeros(3).bool(), [0])
