"""Tests of BUSIDataset (hermes_mm/datasets/busi_dataset.py)."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from hermes_mm.datasets.busi_dataset import BUSIDataset as _BUSIDataset
from hermes_mm.datasets.splits import make_split, save_split

DATA_INFO_KEYS = {'img_path', 'img_rel', 'seg_map_paths', 'has_mask',
                  'gt_label', 'label_name', 'seg_fields', 'reduce_zero_label'}
CLASSES = ('benign', 'malignant', 'normal')


def BUSIDataset(**kwargs):
    """The dataset without MMEngine's serialisation, whose gc.collect()
    costs ~0.7 s per build (one test keeps the default)."""
    kwargs.setdefault('serialize_data', False)
    return _BUSIDataset(**kwargs)


def infos(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def write_split(tiny, path, seed=0, ratio=0.5):
    split = make_split([(r, tiny.labels[r]) for r in tiny.order], ratio, seed)
    save_split(split, str(path))
    return split


def test_data_list_contents_and_order(tiny_busi):
    ds = _BUSIDataset(data_root=tiny_busi.root)  # serialised (default)
    data = infos(ds)
    assert [d['img_rel'] for d in data] == tiny_busi.order
    for d in data:
        assert set(d) - {'sample_idx'} == DATA_INFO_KEYS
        assert d['img_path'] == osp.join(tiny_busi.root, d['img_rel'])
        assert d['has_mask'] is True and d['reduce_zero_label'] is False
        assert d['seg_fields'] == []
        assert d['gt_label'] == tiny_busi.labels[d['img_rel']]
        assert d['label_name'] == CLASSES[d['gt_label']]
    first = data[0]['seg_map_paths']
    assert [osp.basename(p) for p in first] == [
        'benign (1)_mask.png', 'benign (1)_mask_1.png']
    assert [osp.basename(p) for p in data[3]['seg_map_paths']] == [
        'malignant (1)_mask.png', 'malignant (1)_mask_1.png',
        'malignant (1)_mask_2.png']
    assert ds.metainfo['cls_classes'] == CLASSES
    assert ds.metainfo['lesion_classes'] == ('benign', 'malignant')
    assert ds.metainfo['classes'] == ('background', 'lesion')


def test_subsets_follow_split(tiny_busi, tmp_path):
    split = write_split(tiny_busi, tmp_path / 'split.json')
    rels = {}
    for subset in ('labeled', 'unlabeled', 'val', 'test', 'train', None):
        kwargs = dict(data_root=tiny_busi.root,
                      split_file=str(tmp_path / 'split.json'), subset=subset)
        if subset in split and not split[subset]:
            # 7 images: one subset is empty, which is an error
            with pytest.raises(ValueError,
                               match=f"subset '{subset}' holds no image"):
                BUSIDataset(**kwargs)
            rels[subset] = []
            continue
        ds = BUSIDataset(**kwargs)
        rels[subset] = [d['img_rel'] for d in infos(ds)]
        # dataset order, whatever the subset
        assert rels[subset] == [r for r in tiny_busi.order
                                if r in set(rels[subset])]
    assert min(len(v) for v in split.values()) == 0  # the branch above ran
    for key in ('labeled', 'unlabeled', 'val', 'test'):
        assert sorted(rels[key]) == split[key]
    assert sorted(rels['train']) == sorted(split['labeled'] +
                                           split['unlabeled'])
    assert rels[None] == tiny_busi.order


def test_split_file_relative_to_data_root(tiny_busi, monkeypatch, tmp_path):
    write_split(tiny_busi, osp.join(tiny_busi.root, 's.json'))
    monkeypatch.chdir(tmp_path)  # 's.json' is not in the cwd
    ds = BUSIDataset(data_root=tiny_busi.root, split_file='s.json',
                     subset='labeled')
    assert 0 < len(ds) < len(tiny_busi.order)


def test_relative_data_root(tiny_busi, monkeypatch):
    monkeypatch.chdir(osp.dirname(tiny_busi.root))
    ds = BUSIDataset(data_root='BUSI')
    assert ds.get_data_info(0)['img_path'] == osp.join('BUSI',
                                                       tiny_busi.order[0])


def test_cls_classes_override(tiny_busi):
    ds = BUSIDataset(data_root=tiny_busi.root,
                     metainfo=dict(cls_classes=('normal', 'malignant',
                                                'benign'),
                                   lesion_classes=('malignant', 'benign')))
    data = infos(ds)
    assert data[0]['img_rel'].startswith('normal/')
    assert data[0]['gt_label'] == 0 and data[0]['label_name'] == 'normal'
    assert data[-1]['label_name'] == 'benign' and data[-1]['gt_label'] == 2


def test_error_missing_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.*does not exist'):
        BUSIDataset(data_root=str(tmp_path / 'nowhere'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError,
                       match=r"Class folder .*empty/benign.* not found"):
        BUSIDataset(data_root=str(tmp_path / 'empty'))
    with pytest.raises(ValueError, match='needs a data_root'):
        BUSIDataset()


def test_error_empty_class_folder(tiny_busi):
    folder = osp.join(tiny_busi.root, 'extra')
    os.makedirs(folder)
    with pytest.raises(ValueError, match=r"extra.* holds no image"):
        BUSIDataset(data_root=tiny_busi.root,
                    metainfo=dict(cls_classes=CLASSES + ('extra', )))


def test_error_unknown_class_folder(tiny_busi, files):
    files.write(osp.join(tiny_busi.root, 'Benign', 'x.png'),
                np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError) as err:
        BUSIDataset(data_root=tiny_busi.root)
    msg = str(err.value)
    assert "'Benign' is not one of the expected classes" in msg
    assert "['benign', 'malignant', 'normal']" in msg
    assert 'metainfo=dict(cls_classes=' in msg


def test_error_image_without_mask(tiny_busi, files):
    files.write(osp.join(tiny_busi.root, 'benign', 'benign (7).png'),
                np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError) as err:
        BUSIDataset(data_root=tiny_busi.root)
    assert 'benign (7).png' in str(err.value)
    assert "'benign (7)_mask.png'" in str(err.value)


def test_error_split_paths_not_in_dataset(tiny_busi, tmp_path):
    split = write_split(tiny_busi, tmp_path / 'ok.json')
    split['test'] += [f'benign/ghost ({i}).png' for i in range(12)]
    (tmp_path / 'bad.json').write_text(json.dumps(split))
    with pytest.raises(ValueError) as err:
        BUSIDataset(data_root=tiny_busi.root,
                    split_file=str(tmp_path / 'bad.json'))
    msg = str(err.value)
    assert 'bad.json' in msg and '12 image(s)' in msg
    assert "'benign/ghost (0).png'" in msg and "'benign/ghost (9).png'" in msg
    assert 'ghost (10)' not in msg and 'and 2 more' in msg


def test_error_split_path_in_two_subsets(tiny_busi, tmp_path):
    split = write_split(tiny_busi, tmp_path / 'ok.json')
    split['val'].append(split['labeled'][0])
    (tmp_path / 'dup.json').write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"dup.json.*'labeled' and 'val'"):
        BUSIDataset(data_root=tiny_busi.root,
                    split_file=str(tmp_path / 'dup.json'), subset='val')


def test_error_labeled_list_misses_a_class(tiny_busi, tmp_path):
    split = write_split(tiny_busi, tmp_path / 'ok.json', ratio=1.0)
    moved = [p for p in split['labeled'] if p.startswith('normal/')]
    split['labeled'] = [p for p in split['labeled'] if p not in moved]
    split['unlabeled'] += moved
    (tmp_path / 'nonormal.json').write_text(json.dumps(split))
    with pytest.raises(ValueError,
                       match=r"nonormal.json.*no image of class\(es\) "
                       r"\['normal'\]"):
        BUSIDataset(data_root=tiny_busi.root,
                    split_file=str(tmp_path / 'nonormal.json'),
                    subset='labeled')


def test_only_the_built_subsets_are_checked(tiny_busi, tmp_path):
    # a test-only split (make_split --ratios 0 0 1) builds 'test' and all
    # images; 'labeled' fails with the named message
    test_only = {'labeled': [], 'unlabeled': [], 'val': [],
                 'test': list(tiny_busi.order)}
    (tmp_path / 'test_only.json').write_text(json.dumps(test_only))
    for subset in ('test', None):
        ds = BUSIDataset(data_root=tiny_busi.root, subset=subset,
                         split_file=str(tmp_path / 'test_only.json'))
        assert [i['img_rel'] for i in infos(ds)] == tiny_busi.order
    with pytest.raises(ValueError, match='labeled list has no image of'):
        BUSIDataset(data_root=tiny_busi.root, subset='labeled',
                    split_file=str(tmp_path / 'test_only.json'))
    # the training lists name images of another folder: 'test' still builds
    split = write_split(tiny_busi, tmp_path / 'ok.json')
    split['labeled'] += ['benign/elsewhere (1).png']
    (tmp_path / 'other.json').write_text(json.dumps(split))
    ds = BUSIDataset(data_root=tiny_busi.root, subset='test',
                     split_file=str(tmp_path / 'other.json'))
    assert [i['img_rel'] for i in infos(ds)] == [
        p for p in tiny_busi.order if p in split['test']]
    with pytest.raises(ValueError, match='elsewhere'):
        BUSIDataset(data_root=tiny_busi.root, subset='train',
                    split_file=str(tmp_path / 'other.json'))


def test_missing_split_file_names_all_images_option(tiny_busi):
    with pytest.raises(FileNotFoundError, match='--all-images'):
        BUSIDataset(data_root=tiny_busi.root, subset='test',
                    split_file='data/BUSI/splits/none_here.json')


def test_error_subset_arguments(tiny_busi, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown subset 'training'"):
        BUSIDataset(data_root=tiny_busi.root, split_file='x.json',
                    subset='training')
    with pytest.raises(ValueError, match=r"subset='val' needs a split_file"):
        BUSIDataset(data_root=tiny_busi.root, subset='val')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        BUSIDataset(data_root=tiny_busi.root, split_file='missing.json',
                    subset='val')


def test_error_bad_metainfo(tiny_busi):
    with pytest.raises(ValueError, match='lesion_classes.*subset'):
        BUSIDataset(data_root=tiny_busi.root,
                    metainfo=dict(cls_classes=('benign', 'normal')))
    with pytest.raises(ValueError, match='reduce_zero_label'):
        BUSIDataset(data_root=tiny_busi.root, reduce_zero_label=True)
