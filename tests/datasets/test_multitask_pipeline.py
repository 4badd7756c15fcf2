"""PackMultiTaskInputs (hermes_mm/datasets/transforms/formatting.py) and a
full pipeline built from config dicts through the registry."""
import numpy as np
import torch
from mmengine.registry import init_default_scope

# importing the modules registers them
from hermes_mm.datasets.busi_dataset import BUSIDataset  # noqa: F401
from hermes_mm.datasets.transforms.formatting import PackMultiTaskInputs
from hermes_mm.datasets.transforms.loading import \
    LoadMultiTaskAnnotations  # noqa: F401
from hermes_mm.registry import DATASETS

CROP = (16, 12)


def train_pipeline(hidden):
    return [
        dict(type='LoadImageAsStored'),
        dict(type='LoadMultiTaskAnnotations', hidden=hidden),
        dict(type='RandomResize', scale=(48, 40), ratio_range=(0.8, 1.2),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=CROP),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackMultiTaskInputs'),
    ]


def build(root, pipeline):
    init_default_scope('mmseg')
    return DATASETS.build(dict(type='BUSIDataset', data_root=root,
                               pipeline=pipeline, serialize_data=False))


def test_train_pipeline_shapes_and_hidden(tiny_busi):
    before = tiny_busi.checksums()
    plain = build(tiny_busi.root, train_pipeline(hidden=False))
    hidden = build(tiny_busi.root, train_pipeline(hidden=True))
    flips, lesion_pixels = set(), 0
    for i, rel in enumerate(tiny_busi.order):
        np.random.seed(i)
        sample = plain[i]
        np.random.seed(i)
        hid = hidden[i]
        inputs, ds = sample['inputs'], sample['data_samples']
        assert inputs.shape == (3, ) + CROP and inputs.dtype == torch.uint8
        seg = ds.gt_sem_seg.data
        assert seg.shape == (1, ) + CROP and seg.dtype == torch.long
        assert set(seg.unique().tolist()) <= {0, 1}
        flips.add(ds.flip)
        lesion_pixels += int(seg.sum())
        assert ds.gt_label.shape == (1, ) and ds.gt_label.dtype == torch.long
        assert ds.gt_label.item() == tiny_busi.labels[rel]
        assert ds.img_rel == rel and ds.ori_shape == tiny_busi.masks[
            rel].shape
        assert 'hidden_sem_seg' not in ds and 'hidden_label' not in ds
        # hidden: same geometry, nothing to train on
        hds = hid['data_samples']
        assert 'gt_sem_seg' not in hds
        assert hds.gt_label.tolist() == [-1]
        assert hds.hidden_label.tolist() == [tiny_busi.labels[rel]]
        assert torch.equal(hid['inputs'], inputs)
        assert torch.equal(hds.hidden_sem_seg.data, seg)
    # the alignment check above saw both flip states and some lesion
    assert flips == {True, False} and lesion_pixels > 0
    assert tiny_busi.checksums() == before


def test_flip_pipeline_closed_form(tiny_busi):
    ds = build(tiny_busi.root, [
        dict(type='LoadImageAsStored'),
        dict(type='LoadMultiTaskAnnotations'),
        dict(type='RandomFlip', prob=1.0, direction='horizontal'),
        dict(type='PackMultiTaskInputs'),
    ])
    for i, rel in enumerate(tiny_busi.order):
        seg = ds[i]['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(seg, tiny_busi.masks[rel][:, ::-1])


def test_pack_defaults_and_hidden_fields():
    img = np.zeros((4, 5, 3), np.uint8)
    seg = np.eye(4, 5, dtype=np.uint8)
    packed = PackMultiTaskInputs()(dict(img=img, img_rel='a/b.png',
                                        img_path='/x/a/b.png'))
    ds = packed['data_samples']
    assert ds.gt_label.tolist() == [-1] and ds.gt_label.dtype == torch.long
    assert ds.img_rel == 'a/b.png' and ds.img_path == '/x/a/b.png'
    assert 'gt_sem_seg' not in ds and 'hidden_sem_seg' not in ds
    packed = PackMultiTaskInputs()(dict(img=img, gt_label=np.int64(2),
                                        hidden_seg_map=seg, hidden_label=1))
    ds = packed['data_samples']
    assert ds.gt_label.tolist() == [2]
    assert ds.hidden_label.tolist() == [1]
    assert ds.hidden_label.dtype == torch.long
    hs = ds.hidden_sem_seg.data
    assert hs.shape == (1, 4, 5) and hs.dtype == torch.long
    assert torch.equal(hs[0], torch.from_numpy(seg).long())


def test_pack_custom_meta_keys():
    packed = PackMultiTaskInputs(meta_keys=('img_rel', ))(
        dict(img=np.zeros((2, 2, 3), np.uint8), img_rel='r.png',
             img_path='p.png'))
    assert packed['data_samples'].metainfo == {'img_rel': 'r.png'}
