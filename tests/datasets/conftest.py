"""Tiny on-disk data sets for the dataset/transform tests."""
import os
import os.path as osp
from typing import Dict, NamedTuple

import cv2
import numpy as np
import pytest

from hermes_mm.utils import tree_checksums

# Image size (H, W) of every generated image.
H, W = 20, 24
LESION = 255


class TinyBUSI(NamedTuple):
    """A generated BUSI-layout folder and what loading it must give."""
    root: str
    order: list  # img_rel in the expected dataset order
    masks: Dict[str, np.ndarray]  # img_rel -> expected uint8 {0,1} map
    labels: Dict[str, int]  # img_rel -> class index

    def checksums(self):
        return checksums(self.root)


def rect(y0, y1, x0, x1):
    """A boolean (H, W) map with one rectangle set."""
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def gray(m):
    return (m * LESION).astype(np.uint8)


def write(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array), path


checksums = tree_checksums  # sha256 per file, keyed by relative path


def make_tiny_busi(root: str, seed: int = 0) -> TinyBUSI:
    """Write 7 images: _mask_1/_mask_2 files, an RGBA and a 3-channel mask,
    normal images with empty masks, names needing natural sort."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = gray(rect(5, 9, 5, 9))[..., None]
    rgba[..., 3] = LESION  # opaque alpha everywhere: must be ignored
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[0:3, 0:4, 2] = LESION  # lesion only in the red channel
    # class -> [(stem, [mask arrays as written], expected bool map)]
    spec = {
        'benign': [
            ('benign (1)',
             [gray(rect(2, 6, 3, 9)), gray(rect(10, 15, 12, 20))],
             rect(2, 6, 3, 9) | rect(10, 15, 12, 20)),
            ('benign (2)', [rgba], rect(5, 9, 5, 9)),
            ('benign (10)', [bgr], rect(0, 3, 0, 4)),
        ],
        'malignant': [
            ('malignant (1)', [gray(rect(1, 4, 1, 4)), gray(rect(3, 8, 2, 6)),
                               gray(rect(19, 20, 0, 24))],
             rect(1, 4, 1, 4) | rect(3, 8, 2, 6) | rect(19, 20, 0, 24)),
            ('malignant (2)', [gray(rect(12, 18, 0, 24))],
             rect(12, 18, 0, 24)),
        ],
        'normal': [
            ('normal (1)', [gray(rect(0, 0, 0, 0))], rect(0, 0, 0, 0)),
            ('normal (2)', [gray(rect(0, 0, 0, 0))], rect(0, 0, 0, 0)),
        ],
    }
    masks, labels = {}, {}
    for label, (cls, entries) in enumerate(spec.items()):
        for stem, mask_arrays, expected in entries:
            rel = f'{cls}/{stem}.png'
            write(osp.join(root, rel),
                  rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            for k, m in enumerate(mask_arrays):
                suffix = '_mask' if k == 0 else f'_mask_{k}'
                write(osp.join(root, cls, f'{stem}{suffix}.png'), m)
            masks[rel] = expected.astype(np.uint8)
            labels[rel] = label
    # natural order: (2) before (10)
    order = ['benign/benign (1).png', 'benign/benign (2).png',
             'benign/benign (10).png', 'malignant/malignant (1).png',
             'malignant/malignant (2).png', 'normal/normal (1).png',
             'normal/normal (2).png']
    return TinyBUSI(root, order, masks, labels)


@pytest.fixture
def tiny_busi(tmp_path) -> TinyBUSI:
    return make_tiny_busi(str(tmp_path / 'BUSI'))


class Files:
    """Helpers handed to tests as the ``files`` fixture."""
    H, W = H, W
    write = staticmethod(write)
    checksums = staticmethod(checksums)
    rect = staticmethod(rect)
    gray = staticmethod(gray)


@pytest.fixture
def files():
    return Files
