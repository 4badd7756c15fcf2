"""Drop predicted lesion components smaller than a minimum area.

A test-time post-processing in the spirit of nnU-Net's connected-component
filtering: on lesion-free images (BUSI "normal") a segmentation model tends
to mark small lesion-like structures (ducts, cysts, shadows), and each such
image then scores Dice 0. With ``test_cfg=dict(min_lesion_area=A)`` a
:class:`~hermes_mm.models.segmentors.MultiTaskSegmentor` sets every
connected foreground component of ``pred_sem_seg`` covering less than the
fraction ``A`` of the image to background (``seg_logits`` are kept as
predicted). Choose ``A`` from data the model was trained on, e.g. the
smallest lesion of the labelled images (``research/small_components.py``
does that), never from the test set.
"""
import numpy as np
import torch
from scipy import ndimage
from torch import Tensor


def test_cfg_key(model_cfg, name: str) -> str:
    """The config key of the test option ``name`` for ``model_cfg``:
    wrappers such as ``HermesSegmentor`` hold the predicting
    MultiTaskSegmentor under ``segmentor``."""
    prefix = 'model.segmentor' if 'segmentor' in model_cfg else 'model'
    return f'{prefix}.test_cfg.{name}'


def check_min_area(min_area, key: str = 'test_cfg.min_lesion_area'):
    """``min_area`` as a float in [0, 1) (a fraction of the image area)."""
    if isinstance(min_area, bool) or not isinstance(
            min_area, (int, float)) or not 0 <= min_area < 1:
        raise ValueError(f'{key} must be a fraction of the image area in '
                         f'[0, 1), got {min_area!r}')
    return float(min_area)


def remove_small_components(label_map: Tensor, min_area: float,
                            background: int = 0) -> Tensor:
    """Set 8-connected components of each non-background class that cover
    less than ``min_area`` of the image to ``background``.

    Args:
        label_map (Tensor): (H, W) or (1, H, W) integer class map.
        min_area (float): Fraction of ``H * W`` in [0, 1); 0 keeps all.
        background (int): The class the dropped pixels get.

    Returns:
        Tensor: A new map of the same shape, dtype and device.
    """
    min_area = check_min_area(min_area, 'min_area')
    if min_area == 0:
        return label_map.clone()
    labels = label_map.detach().cpu().numpy()
    out = labels.copy()
    min_pixels = min_area * labels.size
    structure = np.ones((3, ) * labels.ndim, dtype=bool)
    if labels.ndim == 3:  # (1, H, W): connectivity within the plane only
        structure[0] = structure[2] = False
    for cls in np.unique(labels):
        if cls == background:
            continue
        components, num = ndimage.label(labels == cls, structure=structure)
        if num == 0:
            continue
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes < min_pixels)
        small = small[small > 0]  # 0 is "not this class"
        out[np.isin(components, small)] = background
    return torch.from_numpy(out).to(label_map.device)
