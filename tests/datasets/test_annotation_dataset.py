"""Tests of MultiTaskAnnotationDataset
(hermes_mm/datasets/annotation_dataset.py)."""
import json
import os.path as osp

import numpy as np
import pytest

from hermes_mm.datasets.annotation_dataset import MultiTaskAnnotationDataset
from hermes_mm.datasets.splits import save_split

META = dict(cls_classes=('benign', 'malignant'),
            lesion_classes=('benign', 'malignant'))


@pytest.fixture
def ann_root(tmp_path, files):
    """Four images: masks absent / [] / two masks; labels name/int/absent."""
    root = tmp_path / 'tn3k'
    for name in ('a', 'b', 'c', 'd'):
        files.write(str(root / 'img' / f'{name}.png'),
                    np.zeros((files.H, files.W, 3), np.uint8))
    for name in ('c1', 'c2', 'd1'):
        files.write(str(root / 'mask' / f'{name}.png'),
                    np.zeros((files.H, files.W), np.uint8))
    lines = [
        {'img': 'img/a.png', 'label': 'benign'},
        {'img': 'img/b.png', 'masks': [], 'label': 1},
        {'img': 'img/c.png', 'masks': ['mask/c1.png', 'mask/c2.png']},
        {'img': 'img/d.png', 'masks': ['mask/d1.png'], 'label': 'malignant',
         'extra': 'ignored'},
    ]
    (root / 'ann.jsonl').write_text(
        '\n'.join(json.dumps(x) for x in lines) + '\n\n')
    return root


def build(root, **kwargs):
    kwargs.setdefault('metainfo', META)
    kwargs.setdefault('ann_file', 'ann.jsonl')
    kwargs.setdefault('serialize_data', False)  # skips a slow gc.collect()
    return MultiTaskAnnotationDataset(data_root=str(root), **kwargs)


def test_data_list(ann_root):
    ds = build(ann_root)
    data = [ds.get_data_info(i) for i in range(len(ds))]
    assert [d['img_rel'] for d in data] == ['img/a.png', 'img/b.png',
                                            'img/c.png', 'img/d.png']
    assert [d['has_mask'] for d in data] == [False, True, True, True]
    assert [d['gt_label'] for d in data] == [0, 1, -1, 1]
    assert [d['label_name'] for d in data] == ['benign', 'malignant', '',
                                               'malignant']
    assert data[0]['seg_map_paths'] == [] and data[1]['seg_map_paths'] == []
    assert data[2]['seg_map_paths'] == [
        osp.join(str(ann_root), 'mask/c1.png'),
        osp.join(str(ann_root), 'mask/c2.png')]
    assert data[3]['img_path'] == osp.join(str(ann_root), 'img/d.png')
    assert all(d['seg_fields'] == [] and d['reduce_zero_label'] is False
               for d in data)


def test_absolute_ann_file_and_split(ann_root):
    save_split({'labeled': ['img/a.png', 'img/b.png'], 'unlabeled':
                ['img/c.png'], 'val': [], 'test': ['img/d.png']},
               str(ann_root / 'split.json'))
    ds = build(ann_root, ann_file=str(ann_root / 'ann.jsonl'),
               split_file='split.json', subset='train')
    assert [ds.get_data_info(i)['img_rel'] for i in range(len(ds))] == [
        'img/a.png', 'img/b.png', 'img/c.png']


def test_split_labeled_missing_class(ann_root):
    save_split({'labeled': ['img/a.png'], 'unlabeled': ['img/b.png'],
                'val': [], 'test': []}, str(ann_root / 'split.json'))
    with pytest.raises(ValueError, match=r"\['malignant'\]"):
        build(ann_root, split_file='split.json', subset='labeled')


def write_ann(root, *lines):
    (root / 'bad.jsonl').write_text('\n'.join(lines) + '\n')
    return 'bad.jsonl'


@pytest.mark.parametrize('line, error, message', [
    ('{"img": "img/a.png", ', ValueError, 'line 2: invalid JSON'),
    ('{"masks": []}', ValueError, 'line 2: expected a JSON object'),
    ('{"img": "img/b.png", "label": "benigne"}', ValueError,
     r"line 2: unknown label 'benigne'.*\['benign', 'malignant'\]"),
    ('{"img": "img/b.png", "label": 2}', ValueError,
     r'line 2: label 2 out of range.*\[0, 2\)'),
    ('{"img": "img/b.png", "masks": "mask/c1.png"}', ValueError,
     'line 2: "masks" must be a list'),
    ('{"img": "img/a.png"}', ValueError, 'already listed on line 1'),
    ('{"img": "img/zz.png"}', FileNotFoundError, r'line 2: file .*img/zz.png'),
    ('{"img": "img/b.png", "masks": ["mask/zz.png"]}', FileNotFoundError,
     r'line 2: file .*mask/zz.png'),
])
def test_ann_file_errors(ann_root, line, error, message):
    ann = write_ann(ann_root, '{"img": "img/a.png"}', line)
    with pytest.raises(error, match=message) as err:
        build(ann_root, ann_file=ann)
    assert 'bad.jsonl' in str(err.value)


def test_other_errors(ann_root):
    with pytest.raises(ValueError, match=r'metainfo\["cls_classes"\]'):
        build(ann_root, metainfo=None)
    with pytest.raises(FileNotFoundError, match='nope.jsonl'):
        build(ann_root, ann_file='nope.jsonl')
    with pytest.raises(ValueError, match='lists no image'):
        build(ann_root, ann_file=write_ann(ann_root, ''))
    with pytest.raises(ValueError, match='needs an ann_file'):
        build(ann_root, ann_file='')
