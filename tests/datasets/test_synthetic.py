"""Tests of the synthetic BUSI-layout generator
(:mod:`hermes_mm.datasets.synthetic`, ``tools/make_synthetic_busi.py``)."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import replace

import cv2
import numpy as np
import pytest

from hermes_mm.datasets import synthetic
from hermes_mm.utils import tree_checksums

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLI = osp.join(REPO_ROOT, 'tools', 'make_synthetic_busi.py')
NUM = 60
SIZE_RANGE = synthetic.DEFAULT_SIZE_RANGE
FILE_RE = re.compile(r'^(benign|malignant|normal) \((\d+)\)'
                     r'(?:_mask(?:_(\d+))?)?\.png$')


def _read_mask(path):
    """Binary lesion mask of one file: colour channels max-reduced, alpha
    ignored (BUSI's 3- and 4-channel masks)."""
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=2)
    return mask


def _merged_mask(root, cls, k):
    files = sorted(f for f in os.listdir(osp.join(root, cls))
                   if f.startswith(f'{cls} ({k})_mask'))
    return np.logical_or.reduce(
        [_read_mask(osp.join(root, cls, f)) > 0 for f in files])


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic_busi'))
    summary = synthetic.generate_synthetic_busi(root, num=NUM, seed=0)
    return root, summary


def test_layout_and_names_match_busi(dataset):
    root, summary = dataset
    assert sorted(os.listdir(root)) == list(synthetic.CLASS_NAMES)
    indices = defaultdict(set)
    extra = 0
    for cls in synthetic.CLASS_NAMES:
        files = os.listdir(osp.join(root, cls))
        for name in files:
            match = FILE_RE.match(name)
            assert match, name
            assert match.group(1) == cls
            if name.endswith('_mask.png'):
                continue
            if match.group(3) is not None:
                assert match.group(3) == '1', name
                extra += 1
            else:
                indices[cls].add(int(match.group(2)))
        # Numbering is 1..n per class, and every image has a _mask file.
        n = summary['counts'][cls]
        assert indices[cls] == set(range(1, n + 1))
        for k in range(1, n + 1):
            assert f'{cls} ({k})_mask.png' in files
    assert extra == summary['num_extra_masks'] > 0
    assert len(summary['images']) == NUM
    assert summary['images'][0] == 'benign/benign (1).png'


def test_images_are_three_channel_grey(dataset):
    root, summary = dataset
    for rel in summary['images'][::7]:
        image = cv2.imread(osp.join(root, rel), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.ndim == 3
        assert image.shape[2] == 3
        assert (image[..., 0] == image[..., 1]).all()
        assert (image[..., 0] == image[..., 2]).all()
        assert all(SIZE_RANGE[0] <= s <= SIZE_RANGE[1]
                   for s in image.shape[:2])
        mask = cv2.imread(
            osp.join(root, rel[:-4] + '_mask.png'), cv2.IMREAD_UNCHANGED)
        assert mask.shape[:2] == image.shape[:2]
        assert image.std() > 0


def test_masks_binary_and_some_multichannel(dataset):
    root, summary = dataset
    channels = Counter()
    for cls in synthetic.CLASS_NAMES:
        for name in os.listdir(osp.join(root, cls)):
            if '_mask' not in name:
                continue
            raw = cv2.imread(osp.join(root, cls, name), cv2.IMREAD_UNCHANGED)
            channels[1 if raw.ndim == 2 else raw.shape[2]] += 1
            if raw.ndim == 3 and raw.shape[2] == 4:
                assert (raw[..., 3] == 255).all()  # opaque alpha
            assert set(np.unique(_read_mask(
                osp.join(root, cls, name)))) <= {0, 255}
    assert channels[3] >= 1 and channels[4] >= 1
    assert channels[1] > channels[3] + channels[4]
    assert dict(channels) == {
        k: v for k, v in summary['mask_channels'].items() if v}


def test_normal_masks_empty_lesion_masks_not(dataset):
    root, summary = dataset
    for cls in synthetic.CLASS_NAMES:
        for k in range(1, summary['counts'][cls] + 1):
            mask = _merged_mask(root, cls, k)
            if cls == 'normal':
                assert not mask.any()
            else:
                # Lesion area in roughly 3-25 % of the image.
                assert 0.02 < mask.mean() < 0.3, (cls, k, mask.mean())


def test_class_ratio(dataset):
    _, summary = dataset
    for name, ratio in zip(synthetic.CLASS_NAMES,
                           synthetic.BUSI_CLASS_RATIO):
        assert abs(summary['counts'][name] / NUM - ratio) < 0.03
    assert synthetic.class_counts(3, synthetic.BUSI_CLASS_RATIO) == {
        'benign': 1, 'malignant': 1, 'normal': 1}
    assert sum(synthetic.class_counts(7, (1, 1, 1)).values()) == 7
    with pytest.raises(ValueError):
        synthetic.class_counts(5, (1, 1))


def test_deterministic(dataset, tmp_path):
    small = dict(num=5, size_range=(64, 80))
    first = synthetic.generate_synthetic_busi(str(tmp_path / 'a'), seed=3,
                                              **small)
    synthetic.generate_synthetic_busi(str(tmp_path / 'b'), seed=3, **small)
    synthetic.generate_synthetic_busi(str(tmp_path / 'c'), seed=4, **small)
    a, b, c = (tree_checksums(str(tmp_path / d)) for d in 'abc')
    assert len(a) >= first['num'] + first['num_mask_files']
    assert a == b
    images = [k for k in a if '_mask' not in k]
    assert all(a[k] != c.get(k) for k in images)
    # An image depends on (seed, class, k) only, not on ``num``.
    root, _ = dataset
    other = tmp_path / 'd'
    synthetic.generate_synthetic_busi(str(other), num=4, seed=0)
    for rel in ('benign/benign (1).png', 'normal/normal (1).png'):
        assert tree_checksums(str(other))[rel] == tree_checksums(root)[rel]


def test_refuses_non_empty_dir_unless_overwrite(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('user file')
    with pytest.raises(FileExistsError):
        synthetic.generate_synthetic_busi(str(out), num=3,
                                          size_range=(64, 64))
    synthetic.generate_synthetic_busi(str(out), num=6, size_range=(64, 64),
                                      overwrite=True)
    synthetic.generate_synthetic_busi(str(out), num=3, size_range=(64, 64),
                                      overwrite=True)
    images = [f for d in synthetic.CLASS_NAMES
              for f in os.listdir(out / d) if '_mask' not in f]
    assert len(images) == 3  # no stale image from the num=6 run
    assert (out / 'keep.txt').read_text() == 'user file'


def _lesion_features(mask):
    """Area fraction and circularity 4 pi A / P^2 of a binary mask."""
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return [m.mean(), 4 * np.pi * m.sum() / perimeter**2]


def test_learnable_but_not_trivial():
    """Lesions are darker than tissue; benign vs malignant is predictable
    from shape, but not perfectly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    per_class = 30
    feats, labels, darker = [], [], []
    for label, cls in enumerate(('benign', 'malignant')):
        for k in range(per_class):
            rng = np.random.default_rng([11, label, k])
            image, masks = synthetic.render_case(rng, cls)
            lesion = np.logical_or.reduce([m > 0 for m in masks])
            grey = image[..., 0].astype(np.float64)
            darker.append(grey[lesion].mean() < grey[~lesion].mean())
            feats.append(_lesion_features(lesion))
            labels.append(label)
    assert np.mean(darker) > 0.9
    clf = make_pipeline(StandardScaler(), LogisticRegression())
    accuracy = cross_val_score(clf, np.array(feats), np.array(labels),
                               cv=5).mean()
    assert 0.6 < accuracy < 0.95, accuracy


def test_normal_distractor_is_dark_but_unlabelled():
    no_duct = replace(synthetic.DEFAULT_TRAITS['normal'], duct_prob=0.0)
    duct = replace(no_duct, duct_prob=1.0)
    gaps = []
    for k in range(6):
        darkest = []
        for traits in (no_duct, duct):
            rng = np.random.default_rng([5, k])
            image, masks = synthetic.render_case(
                rng, 'normal', size=(96, 96), traits={'normal': traits})
            assert len(masks) == 1 and not masks[0].any()
            smooth = cv2.GaussianBlur(image[..., 0].astype(np.float32),
                                      (0, 0), 3)
            darkest.append(smooth.min() / np.median(smooth))
        gaps.append(darkest[0] - darkest[1])
    assert np.mean(gaps) > 0.1  # a duct/cyst makes a clearly darker region


def test_render_case_rejects_unknown_class():
    with pytest.raises(KeyError, match='unknown class'):
        synthetic.render_case(np.random.default_rng(0), 'cyst')


def _load_cli():
    spec = importlib.util.spec_from_file_location('make_synthetic_busi', CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    out = tmp_path / 'busi'
    proc = subprocess.run(
        [sys.executable, CLI, str(out), '--num', '6', '--seed', '1'],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r'^benign\s+3$', proc.stdout, re.M), proc.stdout
    assert re.search(r'^total\s+6$', proc.stdout, re.M)
    images = [f for d in synthetic.CLASS_NAMES
              for f in os.listdir(out / d) if '_mask' not in f]
    assert len(images) == 6
    # A second run into the now non-empty folder is refused ...
    cli = _load_cli()
    before = tree_checksums(str(out))
    assert cli.main([str(out), '--num', '3']) == 1
    assert tree_checksums(str(out)) == before
    # the command-line user is told the flag, not the Python argument
    err = capsys.readouterr().err
    assert 'pass --overwrite to replace' in err and 'overwrite=True' not in err
    # ... unless asked to overwrite.
    assert cli.main([str(out), '--num', '3', '--overwrite']) == 0
    assert len(tree_checksums(str(out))) < len(before)


def test_small_images_with_full_width_lesions(tmp_path):
    """A lesion scaled to the whole width left an empty x range up to
    rounding (numpy: 'high - low < 0'); seen with 48-64 px images."""
    out = tmp_path / 'small'
    synthetic.generate_synthetic_busi(str(out), num=24, seed=0,
                                      size_range=(48, 64))
    masks = [f for d in synthetic.CLASS_NAMES for f in os.listdir(out / d)
             if '_mask' in f]
    assert len(masks) >= 24
