"""tools/dataset_converters/tn3k.py: TN3K layout -> annotation file + split,
read back by MultiTaskAnnotationDataset."""
import hashlib
import importlib.util
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope

from hermes_mm.datasets.splits import load_split
from hermes_mm.registry import DATASETS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'dataset_converters', 'tn3k.py')
    spec = importlib.util.spec_from_file_location('tn3k_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_tn3k(root, n_trainval=12, n_test=4, header=True):
    rng = np.random.default_rng(0)
    for part, n in (('trainval', n_trainval), ('test', n_test)):
        os.makedirs(osp.join(root, f'{part}-image'))
        os.makedirs(osp.join(root, f'{part}-mask'))
        lines = ['name,label'] if header else []
        for i in range(n):
            name = f'{i:04d}.jpg'
            img = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            mask = np.zeros((40, 48), np.uint8)
            mask[10:20, 10:30] = 255
            cv2.imwrite(osp.join(root, f'{part}-image', name), img)
            cv2.imwrite(osp.join(root, f'{part}-mask', name), mask)
            # names without extension in trainval, with it in test
            lines.append(f'{i:04d},{i % 2}' if part == 'trainval' else
                         f'{name},{i % 2}')
        with open(osp.join(root, f'label4{part}.csv'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def _checksums(root):
    sums = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                sums[path] = hashlib.sha256(f.read()).hexdigest()
    return sums


def test_converter_writes_annotations_and_official_split(tmp_path):
    tool = _load_tool()
    root = str(tmp_path / 'TN3K')
    _make_tn3k(root)
    before = _checksums(root)
    ann = str(tmp_path / 'tn3k.jsonl')
    split_path = str(tmp_path / 'split.json')
    assert tool.main([root, '--out', ann, '--split-out', split_path,
                      '--labeled-ratio', '0.25']) == 0
    assert _checksums(root) == before  # data untouched
    lines = [json.loads(line) for line in open(ann)]
    assert len(lines) == 16
    assert lines[0] == dict(
        img='trainval-image/0000.jpg',
        masks=['trainval-mask/0000.jpg'],
        label='benign')
    assert lines[1]['label'] == 'malignant'
    split = load_split(split_path)
    assert split['test'] == [f'test-image/{i:04d}.jpg' for i in range(4)]
    trainval = set(split['labeled'] + split['unlabeled'] + split['val'])
    assert trainval == {f'trainval-image/{i:04d}.jpg' for i in range(12)}
    # stratified: at least one labelled image of each class
    labels = {d['img']: d['label'] for d in lines}
    assert {labels[p] for p in split['labeled']} == {'benign', 'malignant'}

    init_default_scope('mmseg')
    dataset = DATASETS.build(
        dict(
            type='MultiTaskAnnotationDataset',
            data_root=root,
            ann_file=ann,
            split_file=split_path,
            subset='test',
            metainfo=dict(cls_classes=('benign', 'malignant')),
            serialize_data=False))
    assert len(dataset) == 4
    assert dataset[1]['gt_label'] == 1


def test_converter_errors_name_the_problem(tmp_path):
    tool = _load_tool()
    root = str(tmp_path / 'TN3K')
    _make_tn3k(root, header=False)
    os.remove(osp.join(root, 'test-mask', '0002.jpg'))
    with pytest.raises(FileNotFoundError, match='0002.jpg'):
        tool.main([root, '--out', str(tmp_path / 'a.jsonl')])
    with open(osp.join(root, 'label4trainval.csv'), 'a') as f:
        f.write('0099,7\n')
    with pytest.raises(ValueError, match='label4trainval.csv:13'):
        tool.read_labels(osp.join(root, 'label4trainval.csv'))
    with pytest.raises(FileNotFoundError, match='trainval-image'):
        tool.main([str(tmp_path / 'missing'), '--out',
                   str(tmp_path / 'b.jsonl')])
