"""Bad inputs not covered by the dataset tests: a non-0/255 mask (warned,
read with the > 127 rule) and an undecodable image met by a dataset's
pipeline. The other bad inputs of docs/reliability.md are tested in
tests/datasets (masks, splits, folders, label ratio), tests/compat
(checkpoints, images) and tests/tools/test_check_dataset.py."""
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile

from hermes_mm.datasets import BUSIDataset
from hermes_mm.datasets.transforms import LoadMultiTaskAnnotations

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
        pipeline=[LoadImageFromFile(), LoadMultiTaskAnnotations()])
    assert dataset[0]['img'].shape == (H, W, 3)
    index = [d['img_rel'] for d in dataset.load_data_list()].index(
        'malignant/malignant (1).png')
    with pytest.raises(ValueError) as err:
        dataset[index]
    msg = str(err.value)
    assert repr(osp.join(str(root), 'malignant/malignant (1).png')) in msg
    assert 'expected a complete PNG, JPEG, BMP or TIFF image' in msg
