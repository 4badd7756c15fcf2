"""Tests of hermes_mm.utils.config_utils: dataset rewriting for
``--data-root/--split-file``, the CPU dist backend, JSON-able metrics."""
import json
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config

from hermes_mm.utils import (iter_dataset_cfgs, rewrite_datasets,
                             set_dist_backend, to_jsonable)


def busi(subset, **extra):
    return dict(type='BUSIDataset', data_root='old', split_file='old.json',
                subset=subset, pipeline=[dict(type='LoadImageAsStored')],
                **extra)


def semi_cfg():
    """Every wrapper shape the shipped configs use, plus RepeatDataset and
    a dataset that takes a root but no split (unlabelled folder)."""
    return Config(dict(
        train_dataloader=dict(
            batch_size=2,
            dataset=dict(type='ConcatDataset', datasets=[
                busi('labeled'),
                dict(type='RepeatDataset', times=3,
                     dataset=busi('unlabeled')),
                dict(type='UnlabeledImageDataset', data_root='old_u',
                     pipeline=[]),
            ])),
        val_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=1, dataset=busi('val'))),
        test_dataloader=dict(dataset=busi('test')),
    ))


def leaves(cfg):
    """(path, dataset cfg) of the non-wrapper datasets."""
    out = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for path, ds in iter_dataset_cfgs(cfg[key]['dataset'],
                                          f'{key}.dataset'):
            if 'dataset' not in ds and 'datasets' not in ds:
                out.append((path, ds))
    return out


def test_iter_dataset_cfgs_walks_wrappers():
    paths = [p for p, _ in iter_dataset_cfgs(
        semi_cfg().train_dataloader.dataset, 'train_dataloader.dataset')]
    assert paths == [
        'train_dataloader.dataset',
        'train_dataloader.dataset.datasets[0]',
        'train_dataloader.dataset.datasets[1]',
        'train_dataloader.dataset.datasets[1].dataset',
        'train_dataloader.dataset.datasets[2]',
    ]


def test_rewrite_reaches_every_dataset():
    cfg = semi_cfg()
    changed = rewrite_datasets(cfg, data_root='/d', split_file='/s.json')
    for path, ds in leaves(cfg):
        assert ds['data_root'] == '/d', path
        if ds['type'] == 'BUSIDataset':
            assert ds['split_file'] == '/s.json', path
    # keys are set, never added
    assert 'split_file' not in cfg.train_dataloader.dataset.datasets[2]
    assert 'data_root' not in cfg.train_dataloader.dataset
    assert 'data_root' not in cfg.val_dataloader.dataset
    assert changed == [
        'train_dataloader.dataset.datasets[0] (BUSIDataset)',
        'train_dataloader.dataset.datasets[1].dataset (BUSIDataset)',
        'train_dataloader.dataset.datasets[2] (UnlabeledImageDataset)',
        'val_dataloader.dataset.dataset (BUSIDataset)',
        'test_dataloader.dataset (BUSIDataset)',
    ]
    # everything else is untouched
    assert cfg.val_dataloader.dataset.dataset.subset == 'val'
    assert cfg.train_dataloader.dataset.datasets[1].times == 3


def test_rewrite_one_option_at_a_time():
    cfg = semi_cfg()
    rewrite_datasets(cfg, split_file='s.json')
    assert {ds['data_root'] for _, ds in leaves(cfg)} == {'old', 'old_u'}
    assert {ds.get('split_file') for _, ds in leaves(cfg)} == {'s.json', None}
    cfg = semi_cfg()
    rewrite_datasets(cfg, data_root='r')
    split_files = {ds.get('split_file') for _, ds in leaves(cfg)}
    assert split_files == {'old.json', None}
    assert rewrite_datasets(cfg) == []


def test_rewrite_skips_missing_dataloaders():
    cfg = Config(dict(train_dataloader=dict(dataset=busi('labeled')),
                      val_dataloader=None))
    assert rewrite_datasets(cfg, data_root='r') == [
        'train_dataloader.dataset (BUSIDataset)'
    ]


def test_rewrite_raises_when_no_dataset_accepts_split_file():
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(
            type='SyntheticBUSIDataset', data_root='old', pipeline=[])),
        test_dataloader=dict(dataset=dict(
            type='RepeatDataset', times=2,
            dataset=dict(type='SyntheticBUSIDataset', data_root='old')))))
    with pytest.raises(ValueError,
                       match=r'--split-file s\.json was given but no dataset'
                       r' in the config has a `split_file` key'):
        rewrite_datasets(cfg, data_root='r', split_file='s.json')
    with pytest.raises(ValueError, match='--data-root'):
        rewrite_datasets(Config(dict(train_dataloader=dict(
            dataset=dict(type='X', pipeline=[])))), data_root='r')


@pytest.mark.parametrize('env_cfg, cuda, backend', [
    (dict(dist_cfg=dict(backend='nccl')), False, 'gloo'),
    (dict(dist_cfg=dict(backend='nccl')), True, 'nccl'),
    (dict(dist_cfg=dict(backend='gloo')), True, 'gloo'),
    (dict(dist_cfg=dict(backend='mpi')), False, 'mpi'),
    (None, False, 'gloo'),
    (None, True, 'nccl'),
    (dict(cudnn_benchmark=True), False, 'gloo'),
])
def test_set_dist_backend(env_cfg, cuda, backend):
    cfg = Config(dict() if env_cfg is None else dict(env_cfg=env_cfg))
    set_dist_backend(cfg, cuda_available=cuda)
    assert cfg.env_cfg.dist_cfg.backend == backend
    if env_cfg and 'cudnn_benchmark' in env_cfg:
        assert cfg.env_cfg.cudnn_benchmark is True


def test_to_jsonable():
    metrics = {
        'seg/dice': np.float32(81.25),
        'seg/hd95': np.float64(3.5),
        'cls/count': np.int64(7),
        'cls/ok': np.bool_(True),
        'cls/auc': torch.tensor(0.75),
        'cls/n': torch.tensor(3),
        'cls/confusion_matrix': np.array([[1, 0], [2, 3]], dtype=np.int64),
        'probs': torch.tensor([[0.25, 0.75]]),
        'nested': {1: (np.float32(0.5), [torch.tensor(2)])},
        'name': 'teacher',
        'none': None,
    }
    out = to_jsonable(metrics)
    assert out == {
        'seg/dice': 81.25,
        'seg/hd95': 3.5,
        'cls/count': 7,
        'cls/ok': True,
        'cls/auc': 0.75,
        'cls/n': 3,
        'cls/confusion_matrix': [[1, 0], [2, 3]],
        'probs': [[0.25, 0.75]],
        'nested': {'1': [0.5, [2]]},
        'name': 'teacher',
        'none': None,
    }
    assert type(out['seg/dice']) is float and type(out['cls/count']) is int
    assert type(out['cls/n']) is int and type(out['cls/ok']) is bool
    assert json.loads(json.dumps(out)) == out
    assert math.isnan(to_jsonable(np.float32('nan')))
