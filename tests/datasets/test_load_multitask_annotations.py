"""Tests of LoadMultiTaskAnnotations
(hermes_mm/datasets/transforms/loading.py)."""
import numpy as np
import pytest

from hermes_mm.datasets.busi_dataset import BUSIDataset
from hermes_mm.datasets.transforms import (LoadImageAsStored,
                                           LoadMultiTaskAnnotations)


def loaded(info):
    return LoadImageAsStored()(dict(info))


def busi_infos(root):
    ds = BUSIDataset(data_root=root, serialize_data=False)
    return {d['img_rel']: d for d in (ds.get_data_info(i)
                                      for i in range(len(ds)))}


def test_merged_maps_match_expected(tiny_busi):
    # covers OR-merge (_mask + _mask_1 + _mask_2), RGBA with opaque
    # alpha, lesion in one colour channel, normal -> all zeros
    before = tiny_busi.checksums()
    load = LoadMultiTaskAnnotations()
    for rel, info in busi_infos(tiny_busi.root).items():
        out = load(loaded(info))
        seg = out['gt_seg_map']
        assert seg.dtype == np.uint8 and seg.shape == out['img'].shape[:2]
        np.testing.assert_array_equal(seg, tiny_busi.masks[rel], err_msg=rel)
        assert out['seg_fields'] == ['gt_seg_map']
        assert out['gt_label'] == tiny_busi.labels[rel]
        assert 'hidden_seg_map' not in out and 'hidden_label' not in out
    assert tiny_busi.masks['normal/normal (1).png'].sum() == 0
    assert tiny_busi.checksums() == before  # data files untouched


def unit_results(files, tmp_path, masks, has_mask=True, label=1):
    paths = []
    for i, m in enumerate(masks):
        paths.append(str(tmp_path / f'm{i}.png'))
        files.write(paths[-1], m)
    return dict(img_path='img.png', seg_map_paths=paths, has_mask=has_mask,
                gt_label=label, ori_shape=(files.H, files.W),
                img_shape=(files.H, files.W), seg_fields=[])


def test_threshold_rule_8_and_16_bit(files, tmp_path):
    m8 = np.zeros((files.H, files.W), np.uint8)
    m8[0, :4] = [127, 128, 200, 255]
    m16 = np.zeros((files.H, files.W), np.uint16)
    m16[1, :4] = [127 * 257, 127 * 257 + 1, 255, 65535]
    out = LoadMultiTaskAnnotations()(
        unit_results(files, tmp_path, [m8, m16]))
    expected = np.zeros((files.H, files.W), np.uint8)
    expected[0, 1:4] = 1  # > 127
    expected[1, [1, 3]] = 1  # > 127 * 65535 / 255 = 32639
    np.testing.assert_array_equal(out['gt_seg_map'], expected)
    # a stricter threshold drops 128 and 200
    out = LoadMultiTaskAnnotations(binarize_threshold=200)(
        unit_results(files, tmp_path, [m8]))
    assert out['gt_seg_map'].sum() == 1


def test_index_mask_warns_and_threshold_zero_reads_it(files, tmp_path):
    m = files.rect(2, 4, 2, 4).astype(np.uint8)  # 0/1 index mask
    with pytest.warns(UserWarning, match='binarize_threshold=0'):
        out = LoadMultiTaskAnnotations()(unit_results(files, tmp_path, [m]))
    assert out['gt_seg_map'].sum() == 0
    out = LoadMultiTaskAnnotations(binarize_threshold=0)(
        unit_results(files, tmp_path, [m]))
    np.testing.assert_array_equal(out['gt_seg_map'], m)


def test_empty_list_gives_zeros_of_original_shape(files):
    results = dict(img_path='x.png', seg_map_paths=[], has_mask=True,
                   gt_label=2, ori_shape=(7, 5), img_shape=(14, 10))
    out = LoadMultiTaskAnnotations()(results)
    assert out['gt_seg_map'].shape == (7, 5) and out['gt_seg_map'].sum() == 0
    assert out['seg_fields'] == ['gt_seg_map']


def test_missing_mask_writes_nothing_or_fill(files, tmp_path):
    base = dict(img_path='x.png', seg_map_paths=[], has_mask=False,
                gt_label=-1, ori_shape=(3, 4), seg_fields=[])
    out = LoadMultiTaskAnnotations()(dict(base, seg_fields=[]))
    assert 'gt_seg_map' not in out and out['seg_fields'] == []
    out = LoadMultiTaskAnnotations(fill_missing_with=255)(
        dict(base, seg_fields=[]))
    assert out['gt_seg_map'].shape == (3, 4)
    assert (out['gt_seg_map'] == 255).all()


def test_hidden_moves_map_and_label(files, tmp_path):
    m = files.gray(files.rect(1, 5, 1, 5))
    out = LoadMultiTaskAnnotations(hidden=True)(
        unit_results(files, tmp_path, [m], label=1))
    assert 'gt_seg_map' not in out and 'gt_label' not in out
    assert out['hidden_label'] == 1
    assert out['seg_fields'] == ['hidden_seg_map']
    np.testing.assert_array_equal(out['hidden_seg_map'],
                                  files.rect(1, 5, 1, 5).astype(np.uint8))
    out = LoadMultiTaskAnnotations(hidden=True)(
        unit_results(files, tmp_path, [], has_mask=False, label=0))
    assert 'hidden_seg_map' not in out and out['hidden_label'] == 0


def test_error_size_mismatch(files, tmp_path):
    small = np.zeros((files.H - 1, files.W), np.uint8)
    with pytest.raises(ValueError) as err:
        LoadMultiTaskAnnotations()(unit_results(files, tmp_path, [small]))
    msg = str(err.value)
    assert 'm0.png' in msg and "'img.png'" in msg
    assert f'{files.H - 1}x{files.W}' in msg and f'{files.H}x{files.W}' in msg


def test_error_undecodable_and_missing_keys(files, tmp_path):
    bad = tmp_path / 'broken_mask.png'
    bad.write_bytes(b'not an image')
    results = dict(img_path='img.png', seg_map_paths=[str(bad)],
                   has_mask=True, ori_shape=(4, 4))
    with pytest.raises(ValueError, match='broken_mask.png.*decoded'):
        LoadMultiTaskAnnotations()(results)
    with pytest.raises(KeyError, match='has_mask'):
        LoadMultiTaskAnnotations()(dict(seg_map_paths=[], img_path='i.png'))
    with pytest.raises(KeyError, match='LoadImageFromFile'):
        LoadMultiTaskAnnotations()(dict(seg_map_paths=[], has_mask=True))


@pytest.mark.parametrize('kwargs', [dict(binarize_threshold=255),
                                    dict(binarize_threshold=-1),
                                    dict(fill_missing_with=256)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0])):
        LoadMultiTaskAnnotations(**kwargs)
