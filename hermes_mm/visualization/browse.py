"""What a data set feeds the model, drawn: ``image | mask`` with the class.

``tools/misc/browse_dataset.py`` runs each sample through its dataset's
pipeline (augmentations included) and draws the result, as MMSeg's
``browse_dataset.py`` does, for multi-task samples: the packed image, its
lesion mask (lesion red, ignored pixels grey) and the image class written
on it ("unlabelled" when the class is unknown). Multi-branch samples
(Hermes' ``sup`` / ``unsup_weak`` / ``unsup_strong`` views) give one panel
per branch.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .drawing import Color, colorize, draw_text, hconcat, to_numpy

#: Mask colours: background, lesion, and pixels labelled ``ignore_index``.
MASK_COLORS: Dict[str, Color] = dict(
    background=(0, 0, 0), lesion=(220, 20, 60), ignored=(128, 128, 128))


def packed_image(inputs: torch.Tensor) -> np.ndarray:
    """A packed (3, H, W) BGR uint8 tensor as an RGB (H, W, 3) array."""
    image = to_numpy(inputs).transpose(1, 2, 0)
    return np.ascontiguousarray(image[..., ::-1].astype(np.uint8))


def mask_panel(sample, shape: Tuple[int, int], ignore_index: int = 255,
               lesion_index: int = 1) -> np.ndarray:
    """The sample's ``gt_sem_seg`` (else its hidden mask) coloured; grey
    when it has none (an unlabelled image)."""
    seg = None
    for key in ('gt_sem_seg', 'hidden_sem_seg'):
        if key in sample:
            seg = to_numpy(getattr(sample, key).data).reshape(shape)
            break
    if seg is None:
        return np.full(shape + (3, ), MASK_COLORS['ignored'], np.uint8)
    codes = np.zeros(shape, np.int64)  # background
    codes[seg == lesion_index] = 1
    codes[seg == ignore_index] = 2
    return colorize(codes, [MASK_COLORS['background'], MASK_COLORS['lesion'],
                            MASK_COLORS['ignored']])


def class_name(sample, class_names: Sequence[str]) -> str:
    """The sample's class name; ``'unlabelled'`` if the model gets none
    (``'unlabelled (hidden: benign)'`` when the data set knows it; hidden
    labels serve only pseudo-label precision diagnostics)."""

    def name(key: str) -> Optional[str]:
        if key not in sample:
            return None
        label = int(to_numpy(getattr(sample, key)).reshape(-1)[0])
        if label < 0:
            return None
        return (class_names[label] if label < len(class_names) else
                f'class {label}')

    shown, hidden = name('gt_label'), name('hidden_label')
    if shown is not None:
        return shown
    return f'unlabelled (hidden: {hidden})' if hidden else 'unlabelled'


def browse_panels(packed: dict, class_names: Sequence[str],
                  ignore_index: int = 255,
                  lesion_index: int = 1) -> List[Tuple[str, np.ndarray]]:
    """``(branch, image | mask)`` panels of one pipeline output.

    Args:
        packed (dict): ``{'inputs': Tensor, 'data_samples': SegDataSample}``
            or, from ``MultiBranch``, the same with a dict per branch.
        class_names (Sequence[str]): Image-class names.
        ignore_index (int): Mask value of ignored pixels.
        lesion_index (int): Mask value of the lesion.

    Returns:
        list[tuple[str, np.ndarray]]: ``('', panel)`` for a plain sample,
        ``(branch, panel)`` per non-empty branch otherwise.
    """
    inputs, samples = packed['inputs'], packed['data_samples']
    if not isinstance(inputs, dict):
        inputs, samples = {'': inputs}, {'': samples}
    panels = []
    for branch, image in inputs.items():
        sample: Optional[object] = samples.get(branch)
        if image is None or sample is None:
            continue
        rgb = packed_image(image)
        mask = mask_panel(sample, rgb.shape[:2], ignore_index, lesion_index)
        text = class_name(sample, class_names)
        label = f'{branch}: {text}' if branch else text
        panels.append((branch, hconcat([rgb, draw_text(mask, label)])))
    return panels


__all__ = ['MASK_COLORS', 'browse_panels', 'class_name', 'mask_panel',
           'packed_image']
