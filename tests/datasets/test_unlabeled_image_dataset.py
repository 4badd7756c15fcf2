"""Tests of :class:`hermes_mm.datasets.unlabeled_image_dataset.
UnlabeledImageDataset`."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.dataset import ConcatDataset
from mmengine.registry import init_default_scope
from mmseg.datasets import BaseSegDataset

import hermes_mm  # noqa: F401  (compat first: MMSeg needs it)
from hermes_mm.datasets.unlabeled_image_dataset import UnlabeledImageDataset
from hermes_mm.registry import DATASETS

CLS = ('benign', 'malignant', 'normal')
# Written in this order; the dataset must sort them.
FILES = ['scans/b/2.PNG', 'scans/a/10.jpg', 'scans/a/1.png', 'scans/c.bmp']
SORTED = ['scans/a/1.png', 'scans/a/10.jpg', 'scans/b/2.PNG', 'scans/c.bmp']


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    for i, rel in enumerate(FILES):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (6 + i, 8, 3), dtype=np.uint8)
        assert cv2.imwrite(str(path), img)
    (tmp_path / 'scans' / 'notes.txt').write_text('not an image')
    (tmp_path / 'scans' / 'a' / 'empty_dir').mkdir()
    return str(tmp_path)


def test_folder_scan_is_recursive_sorted_and_filtered(root):
    ds = UnlabeledImageDataset(img_dir='scans', data_root=root)
    assert len(ds) == 4
    assert [ds.get_data_info(i)['img_rel'] for i in range(4)] == SORTED
    info = ds.get_data_info(0)
    info.pop('sample_idx')
    assert info == dict(
        img_path=osp.join(root, 'scans', 'a', '1.png'),
        img_rel='scans/a/1.png',
        seg_map_paths=[],
        has_mask=False,
        gt_label=-1,
        label_name='',
        seg_fields=[],
        reduce_zero_label=False)


def test_img_rel_is_relative_to_img_dir_without_data_root(root):
    ds = UnlabeledImageDataset(img_dir=osp.join(root, 'scans', 'a'))
    assert [ds.get_data_info(i)['img_rel'] for i in range(2)] == [
        '1.png', '10.jpg'
    ]


def test_metainfo_defaults_and_override_match_a_labelled_dataset(root):
    ds = UnlabeledImageDataset(data_root=root)
    assert ds.metainfo == dict(
        classes=('background', 'lesion'),
        palette=[[0, 0, 0], [255, 0, 0]],
        cls_classes=(),
        lesion_classes=(),
        label_map=None,
        reduce_zero_label=False)
    # Lists from a config become tuples, as in the labelled datasets.
    ds = UnlabeledImageDataset(
        data_root=root,
        metainfo=dict(cls_classes=list(CLS), lesion_classes=list(CLS[:2])))
    assert ds.metainfo['cls_classes'] == CLS
    assert ds.metainfo['lesion_classes'] == CLS[:2]
    # An MMSeg dataset (like the labelled BUSIDataset) with the same
    # classes concatenates with it.
    labelled = BaseSegDataset(
        data_root=root,
        data_prefix=dict(img_path='scans/a'),
        img_suffix='.png',
        metainfo=dict(
            classes=('background', 'lesion'),
            palette=[[0, 0, 0], [255, 0, 0]],
            cls_classes=CLS,
            lesion_classes=CLS[:2]))
    assert len(ConcatDataset([labelled, ds])) == 1 + 4


def test_text_list(root):
    with open(osp.join(root, 'list.txt'), 'w') as f:
        f.write('b/2.PNG\n\nc.bmp\n')
    ds = UnlabeledImageDataset(
        img_dir='scans', ann_file='list.txt', data_root=root)
    assert [d['img_rel'] for d in ds] == ['scans/b/2.PNG', 'scans/c.bmp']


def test_json_list_and_split_dict(root):
    with open(osp.join(root, 'list.json'), 'w') as f:
        json.dump(['scans/c.bmp', 'scans/a/1.png'], f)
    ds = UnlabeledImageDataset(ann_file='list.json', data_root=root)
    # A list keeps its order.
    assert [d['img_rel'] for d in ds] == ['scans/c.bmp', 'scans/a/1.png']
    split = dict(labeled=['scans/a/1.png'], unlabeled=['scans/a/10.jpg'],
                 val=[], test=[])
    with open(osp.join(root, 'split.json'), 'w') as f:
        json.dump(split, f)
    ds = UnlabeledImageDataset(ann_file='split.json', data_root=root)
    assert [d['img_rel'] for d in ds] == ['scans/a/10.jpg']
    ds = UnlabeledImageDataset(
        ann_file='split.json', subset='labeled', data_root=root)
    assert [d['img_rel'] for d in ds] == ['scans/a/1.png']
    with pytest.raises(KeyError, match=r"no key 'train'.*'labeled'"):
        UnlabeledImageDataset(
            ann_file='split.json', subset='train', data_root=root)


def test_pipeline_loads_images(root):
    init_default_scope('mmseg')  # as under a config's default_scope
    ds = DATASETS.build(
        dict(
            type='UnlabeledImageDataset',
            data_root=root,
            img_dir='scans',
            pipeline=[dict(type='LoadImageAsStored')]))
    item = ds[2]
    assert item['img'].shape == (6, 8, 3)  # scans/b/2.PNG, written first
    assert item['img_rel'] == 'scans/b/2.PNG' and item['has_mask'] is False


def test_empty_folder_is_named(tmp_path):
    empty = tmp_path / 'nothing'
    empty.mkdir()
    (empty / 'readme.md').write_text('no images')
    with pytest.raises(ValueError, match=f"'{empty}' holds no file"):
        UnlabeledImageDataset(img_dir=str(empty))


def test_missing_folder_list_and_files_raise(root):
    with pytest.raises(FileNotFoundError, match='missing_dir'):
        UnlabeledImageDataset(img_dir='missing_dir', data_root=root)
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        UnlabeledImageDataset(ann_file='nope.txt', data_root=root)
    with open(osp.join(root, 'bad.txt'), 'w') as f:
        f.write('scans/c.bmp\nscans/gone.png\n')
    with pytest.raises(FileNotFoundError, match=r'1 image\(s\).*gone.png'):
        UnlabeledImageDataset(ann_file='bad.txt', data_root=root)
    open(osp.join(root, 'empty.txt'), 'w').close()
    with pytest.raises(ValueError, match='empty'):
        UnlabeledImageDataset(ann_file='empty.txt', data_root=root)
    with open(osp.join(root, 'obj.json'), 'w') as f:
        json.dump(dict(unlabeled='scans/c.bmp'), f)
    with pytest.raises(TypeError, match='list of paths'):
        UnlabeledImageDataset(ann_file='obj.json', data_root=root)


def test_lazy_init_defers_the_scan(tmp_path):
    ds = UnlabeledImageDataset(img_dir=str(tmp_path / 'later'),
                               lazy_init=True)
    os.makedirs(tmp_path / 'later')
    cv2.imwrite(str(tmp_path / 'later' / 'x.png'),
                np.zeros((2, 2, 3), np.uint8))
    assert len(ds) == 1


def test_data_prefix_is_rejected():
    with pytest.raises(TypeError, match='img_dir'):
        UnlabeledImageDataset(data_prefix=dict(img_path='x'))
