"""Tests of the generator's named data styles (``synthetic.STYLES``)."""
import hashlib
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hermes_mm.datasets import synthetic
from hermes_mm.datasets.synthetic_busi_dataset import (MARKER_FILE,
                                                       ensure_synthetic_busi)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# sha256 over (relative path, bytes) of every image and mask of
# generate_synthetic_busi(root, num=12, seed=0) as written by the generator
# before styles existed (commit 354d882): the default style must keep
# producing exactly these bytes, since every earlier result was measured on
# them.
DEFAULT_NUM12_SEED0 = (
    'bcb7a341929e94bc1e11f3d7b3176c54e557baba9e18244dbd3ea13563f6dd1f')


def _digest(root):
    import glob
    sha = hashlib.sha256()
    for path in sorted(glob.glob(osp.join(root, '*', '*.png'))):
        sha.update(osp.relpath(path, root).encode())
        with open(path, 'rb') as f:
            sha.update(f.read())
    return sha.hexdigest()


def _images(root, cls, k):
    image = cv2.imread(osp.join(root, cls, f'{cls} ({k}).png'),
                       cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(osp.join(root, cls, f'{cls} ({k})_mask.png'),
                      cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=2)
    return image.astype(np.float64), mask > 0


def test_heldout_style_is_declared_and_known():
    assert synthetic.HELDOUT_STYLE in synthetic.STYLES
    assert 'default' in synthetic.STYLES
    # at least three styles besides today's and the held-out one
    assert len(set(synthetic.STYLES) - {'default'}) >= 4


def test_default_style_is_the_old_generator(tmp_path):
    explicit = synthetic.generate_synthetic_busi(
        str(tmp_path / 'a'), num=12, seed=0, style='default')
    implicit = synthetic.generate_synthetic_busi(str(tmp_path / 'b'), num=12,
                                                 seed=0)
    assert explicit['style'] == implicit['style'] == 'default'
    assert _digest(str(tmp_path / 'a')) == _digest(str(tmp_path / 'b'))
    assert _digest(str(tmp_path / 'a')) == DEFAULT_NUM12_SEED0


@pytest.mark.parametrize('style', sorted(synthetic.STYLES))
def test_every_style_renders_valid_busi_cases(style):
    chosen = synthetic.get_style(style)
    rng = np.random.default_rng(5)
    for cls in synthetic.CLASS_NAMES:
        image, masks = synthetic.render_case(
            rng, cls, size_range=chosen.size_range, traits=chosen.traits,
            tissue=chosen.tissue, annotations=chosen.annotations)
        assert image.dtype == np.uint8 and image.ndim == 3
        lo, hi = chosen.size_range
        assert lo <= image.shape[0] <= hi and lo <= image.shape[1] <= hi
        merged = np.logical_or.reduce([m > 0 for m in masks])
        assert merged.any() == chosen.traits[cls].has_lesion


def test_styles_differ_from_default_where_they_say(tmp_path):
    """Each style changes the images it claims to change (same seed)."""
    def contrast(root):
        # lesion vs surrounding-tissue mean, over the benign images
        values = []
        for k in range(1, 8):
            image, mask = _images(root, 'benign', k)
            ring = cv2.dilate(mask.astype(np.uint8), np.ones(
                (15, 15))).astype(bool) & ~mask
            values.append(image[ring].mean() - image[mask].mean())
        return float(np.mean(values))

    roots = {}
    for style in ('default', 'speckle', 'annotated', 'varied'):
        roots[style] = str(tmp_path / style)
        synthetic.generate_synthetic_busi(
            roots[style], num=12, seed=0, style=style,
            size_range=synthetic.STYLES[style].size_range)
    # near-isoechoic lesions: much less lesion/tissue contrast
    assert contrast(roots['speckle']) < 0.6 * contrast(roots['default'])
    # annotations are bright marks; masks stay identical to the default
    diff = 0
    for k in range(1, 8):
        img_d, mask_d = _images(roots['default'], 'benign', k)
        img_a, mask_a = _images(roots['annotated'], 'benign', k)
        assert (mask_d == mask_a).all()
        diff += int(((img_a - img_d) > 100).sum())
    assert diff > 0
    shapes = {cv2.imread(osp.join(roots['varied'], 'benign',
                                  f'benign ({k}).png')).shape[:2]
              for k in range(1, 8)}
    assert max(max(s) for s in shapes) > synthetic.DEFAULT_SIZE_RANGE[1]


def test_crowded_style_draws_several_distractors():
    chosen = synthetic.get_style('crowded')
    assert chosen.tissue.num_distractors[1] > 1
    assert all(t.duct_prob >= 0.8 for t in chosen.traits.values())


def test_unknown_style_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown synthetic style 'nope'"):
        synthetic.generate_synthetic_busi(str(tmp_path / 'x'), num=3,
                                          style='nope')


def test_dataset_cache_remembers_its_style(tmp_path):
    root = str(tmp_path / 'data')
    ensure_synthetic_busi(root, num=6, seed=0, style='crowded')
    assert osp.isfile(osp.join(root, MARKER_FILE))
    ensure_synthetic_busi(root, num=6, seed=0, style='crowded')  # reuse
    with pytest.raises(ValueError, match='crowded'):
        ensure_synthetic_busi(root, num=6, seed=0)  # default != crowded


def test_cli_lists_styles_and_marks_the_heldout_one():
    out = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools',
                                  'make_synthetic_busi.py'), '--list-styles'],
        capture_output=True, text=True, check=True).stdout
    for name in synthetic.STYLES:
        assert name in out
    line = next(x for x in out.splitlines()
                if x.startswith(synthetic.HELDOUT_STYLE))
    assert 'held-out' in line
