"""Bad inputs not covered by the dataset tests: a non-0/255 mask (warned,
read with the > 127 rule) and an undecodable image met by a dataset's
pipeline. The other bad inputs of docs/reliability.md are tested in
tests/datasets (masks, splits, folders, label ratio, undecodable images),
tests/compat (checkpoints) and tests/tools/test_check_dataset.py."""
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest

from hermes_mm.datasets import BUSIDataset
from hermes_mm.datasets.transforms import (LoadImageAsStored,
                                           LoadMultiTaskAnnotations)

H, W = 6, 8


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return str(path)


def _results(mask_path):
    return dict(img_path='img.png', seg_map_paths=[mask_path],
                has_mask=True, gt_label=0, ori_shape=(H, W), seg_fields=[])


def test_non_binary_mask_warns_once_per_read_and_uses_127(tmp_path):
    mask = np.zeros((H, W), np.uint8)
    mask[0, :4] = [100, 127, 128, 255]
    path = _write(tmp_path / 'benign (1)_mask.png', mask)
    with pytest.warns(UserWarning) as record:
        out = LoadMultiTaskAnnotations()(_results(path))
    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    msg = messages[0]
    assert repr(path) in msg and 'is not binary' in msg
    assert 'besides 0 and 255 it holds 3 value(s): 100, 127, 128' in msg
    assert 'Pixels > 127 (8-bit scale) are taken as lesion' in msg
    assert 'tools/check_dataset.py' in msg
    np.testing.assert_array_equal(out['gt_seg_map'][0, :4], [0, 0, 1, 1])
    assert out['gt_seg_map'].sum() == 2


@pytest.mark.parametrize('values, threshold', [((0, 255), 127),
                                               ((0, 1), 0)])
def test_binary_masks_do_not_warn(tmp_path, values, threshold):
    mask = np.full((H, W), values[0], np.uint8)
    mask[2:4, 2:5] = values[1]
    path = _write(tmp_path / 'm.png', mask)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = LoadMultiTaskAnnotations(binarize_threshold=threshold)(
            _results(path))
    assert out['gt_seg_map'].sum() == 6


def test_undecodable_image_stops_the_dataset_with_its_name(tmp_path):
    root = tmp_path / 'BUSI'
    mask = np.zeros((H, W), np.uint8)
    for cls in ('benign', 'malignant', 'normal'):
        (root / cls).mkdir(parents=True)
        _write(root / cls / f'{cls} (1).png', np.zeros((H, W, 3), np.uint8))
        _write(root / cls / f'{cls} (1)_mask.png', mask)
    bad = root / 'malignant' / 'malignant (1).png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    dataset = BUSIDataset(
        data_root=str(root),
        pipeline=[LoadImageAsStored(), LoadMultiTaskAnnotations()])
    assert dataset[0]['img'].shape == (H, W, 3)
    index = [d['img_rel'] for d in dataset.load_data_list()].index(
        'malignant/malignant (1).png')
    with pytest.raises(ValueError) as err:
        dataset[index]
    msg = str(err.value)
    assert repr(osp.join(str(root), 'malignant/malignant (1).png')) in msg
    assert 'expected a complete PNG, JPEG, BMP or TIFF image' in msg


def _exif_jpeg(path, array_bgr, orientation=6):
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(array_bgr[..., ::-1])).save(
        str(path), 'JPEG', quality=95, exif=exif.tobytes())
    return str(path)


def _load(img_path, mask_path):
    results = dict(img_path=img_path, seg_map_paths=[mask_path],
                   has_mask=True, gt_label=0, seg_fields=[])
    results = LoadImageAsStored()(results)
    return LoadMultiTaskAnnotations()(results)


def test_exif_rotated_square_image_stays_aligned_with_its_mask(tmp_path):
    img = np.zeros((W, W, 3), np.uint8)
    img[:, :3] = 255  # a bright left band, the lesion
    mask = np.zeros((W, W), np.uint8)
    mask[:, :3] = 255
    out = _load(_exif_jpeg(tmp_path / 'a.jpg', img, 6),
                _write(tmp_path / 'a_mask.png', mask))
    lesion = out['gt_seg_map'].astype(bool)
    assert out['img'][lesion].mean() > 200  # image and mask agree
    assert out['img'][~lesion].mean() < 50


def test_exif_rotated_mask_size_error_names_the_orientation(tmp_path):
    img = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError) as err:
        _load(_exif_jpeg(tmp_path / 'b.jpg', img, 6),
              _write(tmp_path / 'b_mask.png', np.zeros((W, H), np.uint8)))
    msg = str(err.value)
    assert f'is {W}x{H} (HxW)' in msg and f'is {H}x{W}' in msg
    assert 'EXIF orientation 6 (rotated 90 degrees clockwise' in msg
    assert 'The mask matches the rotated view' in msg


def test_12_bit_png_loads_bright(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 4096, (H, W), dtype=np.uint16)
    grey[0, 0] = 4095
    out = LoadImageAsStored()(dict(img_path=_write(tmp_path / 'c.png',
                                                   grey)))
    assert out['img'].dtype == np.uint8
    assert out['img'].mean() == pytest.approx(grey.mean() * 255 / 4095,
                                              abs=0.5)
