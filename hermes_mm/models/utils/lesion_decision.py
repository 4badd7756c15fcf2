"""Let the predicted mask decide whether an image shows a lesion.

In BUSI the image classes split into classes whose images show a lesion
(benign, malignant) and a lesion-free class (normal). A multi-task model
answers "is there a lesion?" twice: with its mask and with its classifier.
Trained on few labelled images, the classifier is the weaker judge of that
question (on the synthetic dev set its normal-vs-lesion accuracy is 3-8
points below the mask's, see ``docs/method.md`` §3), so with
``test_cfg=dict(lesion_classes=[...])`` a
:class:`~hermes_mm.models.segmentors.MultiTaskSegmentor` lets the predicted
mask (after ``min_lesion_area``) make that decision and the classifier pick
the class within it: an image with a predicted lesion pixel gets the most
probable lesion class, any other image the most probable lesion-free class.
Only ``pred_label`` changes; ``pred_score`` stays the classifier's softmax
(so AUC measures the classifier alone).
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor


def check_lesion_classes(lesion_classes,
                         num_classes: Optional[int] = None,
                         key: str = 'test_cfg.lesion_classes') -> List[int]:
    """``lesion_classes`` as a sorted list of distinct class indices.

    Both groups must be non-empty: with every class a lesion class (e.g.
    TN3K, where each image holds a nodule) a lesion-free mask would have no
    class to go to.

    Args:
        lesion_classes (sequence[int]): Indices of the image classes whose
            images show a lesion.
        num_classes (int, optional): Number of image classes, when known.
        key (str): Name used in error messages.
    """
    if isinstance(lesion_classes, (str, bytes)) or not isinstance(
            lesion_classes, Sequence) or not lesion_classes or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0
                for c in lesion_classes):
        raise ValueError(f'{key} must be a non-empty list of image class '
                         f'indices (ints >= 0), got {lesion_classes!r}')
    if len(set(lesion_classes)) != len(lesion_classes):
        raise ValueError(f'{key} has repeated indices: {lesion_classes!r}')
    if num_classes is not None:
        if max(lesion_classes) >= num_classes:
            raise ValueError(f'{key} {list(lesion_classes)} must index the '
                             f'{num_classes} image classes')
        if len(lesion_classes) == num_classes:
            raise ValueError(
                f'{key} {list(lesion_classes)} names every one of the '
                f'{num_classes} image classes, so no class is left for an '
                'image without a predicted lesion; leave it unset for data '
                'without a lesion-free class (e.g. TN3K)')
    return sorted(int(c) for c in lesion_classes)


def mask_decides_lesion(scores: Tensor, has_lesion: Tensor,
                        lesion_classes: Sequence[int]) -> Tensor:
    """Image labels with lesion vs lesion-free decided by the mask.

    Args:
        scores (Tensor): (B, K) class scores (probabilities or logits).
        has_lesion (Tensor): (B,) bool, the predicted mask has a lesion.
        lesion_classes (sequence[int]): Indices of the lesion classes.

    Returns:
        Tensor: (B,) long, the most probable lesion class where
        ``has_lesion``, else the most probable of the other classes.
    """
    if scores.dim() != 2 or has_lesion.shape != scores.shape[:1]:
        raise ValueError('scores must be (B, K) and has_lesion (B,), got '
                         f'{tuple(scores.shape)} and '
                         f'{tuple(has_lesion.shape)}')
    lesion_classes = check_lesion_classes(
        list(lesion_classes), scores.shape[1], 'lesion_classes')
    is_lesion_class = torch.zeros(
        scores.shape[1], dtype=torch.bool, device=scores.device)
    is_lesion_class[lesion_classes] = True
    allowed = has_lesion.bool()[:, None] == is_lesion_class[None]
    return scores.masked_fill(~allowed, float('-inf')).argmax(dim=1)
