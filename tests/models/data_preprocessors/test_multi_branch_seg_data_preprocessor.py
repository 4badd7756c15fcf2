"""Tests of :class:`hermes_mm.models.data_preprocessors.
multi_branch_seg_data_preprocessor.MultiBranchSegDataPreProcessor`, and one
end-to-end semi-supervised batch: ConcatDataset -> MultiBranch pipelines ->
MultiSourceRatioSampler -> pseudo_collate -> this pre-processor."""
import copy
import itertools

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset, pseudo_collate
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models import SegDataPreProcessor
from mmseg.structures import SegDataSample
from torch.utils.data import DataLoader

import hermes_mm  # noqa: F401  (compat first: MMSeg's models need it)
from hermes_mm.datasets.samplers.multi_source_ratio_sampler import \
    MultiSourceRatioSampler
from hermes_mm.datasets.transforms.multi_branch import \
    MultiBranch  # noqa: F401  (registers it)
from hermes_mm.datasets.transforms.random_speckle_noise import \
    RandomSpeckleNoise  # noqa: F401  (registers it)
from hermes_mm.datasets.unlabeled_image_dataset import UnlabeledImageDataset
from hermes_mm.models.data_preprocessors import MultiBranchSegDataPreProcessor
from hermes_mm.registry import MODELS

BRANCHES = ['sup', 'unsup_weak', 'unsup_strong']
MEAN, STD = [10., 20., 30.], [2., 4., 5.]
SEG_PAD = 255
H, W = 4, 5
PAD_TO = (6, 8)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def make_preprocessor(**kwargs):
    cfg = dict(mean=MEAN, std=STD, bgr_to_rgb=True, pad_val=0,
               seg_pad_val=SEG_PAD, size=PAD_TO)
    cfg.update(kwargs)
    return MultiBranchSegDataPreProcessor(data_preprocessor=cfg)


def image(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8)


def sample(seed, field='gt_sem_seg'):
    g = torch.Generator().manual_seed(seed)
    s = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W)))
    s.set_data({
        field: PixelData(data=torch.randint(0, 2, (1, H, W), generator=g))
    })
    return s


def labelled(seed):
    return dict(
        inputs=dict(sup=image(seed), unsup_weak=None, unsup_strong=None),
        data_samples=dict(sup=sample(seed), unsup_weak=None,
                          unsup_strong=None))


def unlabelled(seed):
    return dict(
        inputs=dict(sup=None, unsup_weak=image(seed),
                    unsup_strong=image(seed + 100)),
        data_samples=dict(sup=None,
                          unsup_weak=sample(seed, 'hidden_sem_seg'),
                          unsup_strong=sample(seed, 'hidden_sem_seg')))


def expected_normalised(img):
    """(img[::-1] - mean) / std by hand, then padded with 0 to PAD_TO."""
    out = torch.zeros(3, *PAD_TO)
    rgb = img.flip(0).float()
    for c in range(3):
        out[c, :H, :W] = (rgb[c] - MEAN[c]) / STD[c]
    return out


def test_mixed_batch_normalised_and_split_per_branch():
    batch = [labelled(0), unlabelled(1), unlabelled(2)]
    out = make_preprocessor()(pseudo_collate(copy.deepcopy(batch)), True)
    assert set(out['inputs']) == set(out['data_samples']) == set(BRANCHES)
    shapes = {b: tuple(x.shape) for b, x in out['inputs'].items()}
    assert shapes == dict(sup=(1, 3, *PAD_TO), unsup_weak=(2, 3, *PAD_TO),
                          unsup_strong=(2, 3, *PAD_TO))
    assert [len(out['data_samples'][b]) for b in BRANCHES] == [1, 2, 2]
    torch.testing.assert_close(out['inputs']['sup'][0],
                               expected_normalised(batch[0]['inputs']['sup']))
    torch.testing.assert_close(
        out['inputs']['unsup_strong'][1],
        expected_normalised(batch[2]['inputs']['unsup_strong']))


def test_seg_maps_padded_with_seg_pad_val_and_pad_shape_set():
    batch = [labelled(0), unlabelled(1)]
    out = make_preprocessor()(pseudo_collate(copy.deepcopy(batch)), True)
    gt = out['data_samples']['sup'][0].gt_sem_seg.data
    assert gt.shape == (1, *PAD_TO)
    assert torch.equal(gt[:, :H, :W],
                       batch[0]['data_samples']['sup'].gt_sem_seg.data)
    assert torch.all(gt[:, H:] == SEG_PAD)
    assert torch.all(gt[:, :, W:] == SEG_PAD)
    for branch in ('unsup_weak', 'unsup_strong'):
        s = out['data_samples'][branch][0]
        hidden = s.hidden_sem_seg.data
        assert hidden.shape == (1, *PAD_TO)
        before = batch[1]['data_samples'][branch].hidden_sem_seg.data
        assert torch.equal(hidden[:, :H, :W], before)
        assert torch.all(hidden[:, H:] == SEG_PAD)
        assert 'gt_sem_seg' not in s
        assert tuple(s.pad_shape) == PAD_TO  # not None
    assert tuple(out['data_samples']['sup'][0].pad_shape) == PAD_TO


def test_branches_without_samples_are_omitted():
    out = make_preprocessor()(
        pseudo_collate([unlabelled(1), unlabelled(2)]), True)
    assert set(out['inputs']) == {'unsup_weak', 'unsup_strong'}
    assert set(out['data_samples']) == {'unsup_weak', 'unsup_strong'}
    out = make_preprocessor()(pseudo_collate([labelled(0)]), True)
    assert set(out['inputs']) == {'sup'}


def test_plain_batch_is_delegated_unchanged():
    ours = make_preprocessor(size=None, size_divisor=None)
    ref = SegDataPreProcessor(mean=MEAN, std=STD, bgr_to_rgb=True)
    batch = dict(inputs=[image(0), image(1)],
                 data_samples=[sample(0), sample(1)])
    out = ours(copy.deepcopy(batch), False)
    expected = ref(copy.deepcopy(batch), False)
    assert isinstance(out['inputs'], torch.Tensor)
    torch.testing.assert_close(out['inputs'], expected['inputs'])
    assert out['inputs'].shape == (2, 3, H, W)
    assert len(out['data_samples']) == 2


def test_wrapped_attributes_and_device_follow_the_wrapped_preprocessor():
    pre = MODELS.build(
        dict(type='MultiBranchSegDataPreProcessor',
             data_preprocessor=dict(mean=MEAN, std=STD, seg_pad_val=SEG_PAD)))
    assert isinstance(pre.data_preprocessor, SegDataPreProcessor)
    torch.testing.assert_close(pre.mean.flatten(), torch.tensor(MEAN))
    torch.testing.assert_close(pre.std.flatten(), torch.tensor(STD))
    assert pre.seg_pad_val == SEG_PAD
    assert pre.device == torch.device('cpu')
    with pytest.raises(AttributeError):
        pre.no_such_attribute
    # Direct assignment (MMPretrain's init_model does this) reaches the
    # wrapped pre-processor, whose cast_data moves the batch.
    pre._device = torch.device('meta')
    assert pre.data_preprocessor.device == torch.device('meta')
    assert pre.cast_data(dict(x=torch.ones(1)))['x'].device.type == 'meta'
    pre._device = torch.device('cpu')
    # A deep copy (the EMA teacher) has its own device state.
    twin = copy.deepcopy(pre)
    twin.to('meta')
    assert twin.data_preprocessor.device.type == 'meta'
    assert twin.data_preprocessor.mean.device.type == 'meta'
    assert pre.device.type == 'cpu' and pre.mean.device.type == 'cpu'
    pre.cpu()
    assert pre.data_preprocessor.device == torch.device('cpu')


def test_model_device_moves_reach_the_wrapped_preprocessor():

    class Toy(BaseModel):

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return inputs

    model = Toy(data_preprocessor=dict(
        type='MultiBranchSegDataPreProcessor',
        data_preprocessor=dict(mean=MEAN, std=STD)))
    assert isinstance(model.data_preprocessor, MultiBranchSegDataPreProcessor)
    model.to('meta')
    assert model.data_preprocessor.data_preprocessor.device.type == 'meta'
    assert model.data_preprocessor.device.type == 'meta'


def test_default_type_and_bad_batch():
    pre = MultiBranchSegDataPreProcessor(data_preprocessor=dict(mean=None))
    assert type(pre.data_preprocessor) is SegDataPreProcessor
    bad = pseudo_collate([labelled(0)])
    bad['data_samples']['sup'].append(sample(1))
    with pytest.raises(ValueError, match="'sup' has 1 inputs but 2"):
        make_preprocessor()(bad, True)


# ----------------------------------------------------------- end to end
CROP = (12, 12)
CLS = ('benign', 'malignant', 'normal')
METAINFO = dict(cls_classes=CLS, lesion_classes=CLS[:2])
GEOMETRY = [
    dict(type='RandomResize', scale=(16, 16), ratio_range=(0.5, 1.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=CROP),
    dict(type='RandomFlip', prob=0.5),
]
PACK = dict(type='PackSegInputs')  # stands in for PackMultiTaskInputs
STRONG = [
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='mmpretrain.ColorJitter', brightness=0.5, contrast=0.5)]),
    dict(type='mmpretrain.GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.5),
    dict(type='RandomSpeckleNoise', prob=0.5, sigma_range=(0.05, 0.2)),
    dict(type='RandomCutOut', prob=0.5, n_holes=1,
         cutout_ratio=[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)], fill_in=(0, 0, 0)),
    PACK,
]
LABELLED_PIPELINE = [
    dict(type='LoadImageAsStored'),
    dict(type='LoadAnnotations'),  # MMSeg's, from `seg_map_path`
    *GEOMETRY,
    dict(type='MultiBranch', branch_field=BRANCHES, sup=[PACK]),
]
UNLABELLED_PIPELINE = [
    dict(type='LoadImageAsStored'),
    *GEOMETRY,
    dict(type='MultiBranch', branch_field=BRANCHES, unsup_weak=[PACK],
         unsup_strong=STRONG),
]


class TinyLabelled(BaseDataset):
    """Stand-in for the labelled dataset: images + {0, 1} mask files."""

    METAINFO = dict(UnlabeledImageDataset.METAINFO, **METAINFO)

    def __init__(self, root, **kwargs):
        self.root = root
        super().__init__(**kwargs)

    def load_data_list(self):
        return [
            dict(img_path=f'{self.root}/l{i}.png',
                 seg_map_path=f'{self.root}/l{i}_mask.png',
                 seg_fields=[], reduce_zero_label=False, gt_label=i % 3)
            for i in range(3)
        ]


@pytest.fixture
def data_root(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        h, w = 14 + i, 18 - i
        cv2.imwrite(str(tmp_path / f'l{i}.png'),
                    rng.integers(1, 256, (h, w, 3), dtype=np.uint8))
        mask = np.zeros((h, w), np.uint8)
        mask[2:9, 3:11] = 1
        cv2.imwrite(str(tmp_path / f'l{i}_mask.png'), mask)
    (tmp_path / 'unlabelled').mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / 'unlabelled' / f'u{i}.png'),
                    rng.integers(1, 256, (10 + i, 20, 3), dtype=np.uint8))
    return str(tmp_path)


def test_end_to_end_semi_supervised_batch(data_root):
    dataset = ConcatDataset([
        TinyLabelled(data_root, pipeline=LABELLED_PIPELINE),
        UnlabeledImageDataset(data_root=data_root, img_dir='unlabelled',
                              metainfo=METAINFO, pipeline=UNLABELLED_PIPELINE)
    ])
    batch_size = 6  # 2 labelled + 4 unlabelled
    sampler = MultiSourceRatioSampler(dataset, batch_size, [1, 2], seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                        collate_fn=pseudo_collate, num_workers=0)
    pre = make_preprocessor(size=CROP)
    np.random.seed(0)
    padded = 0
    for data in itertools.islice(iter(loader), 3):
        out = pre(data, training=True)
        shapes = {b: tuple(x.shape) for b, x in out['inputs'].items()}
        assert shapes == dict(sup=(2, 3, *CROP), unsup_weak=(4, 3, *CROP),
                              unsup_strong=(4, 3, *CROP))
        assert all(x.dtype == torch.float32 for x in out['inputs'].values())
        for s in out['data_samples']['sup']:
            gt = s.gt_sem_seg.data
            assert gt.shape == (1, *CROP)
            assert set(gt.unique().tolist()) <= {0, 1, SEG_PAD}
            padded += int((gt == SEG_PAD).any())
            assert s.img_path.startswith(data_root + '/l')
        weak = out['data_samples']['unsup_weak']
        strong = out['data_samples']['unsup_strong']
        assert [s.img_path for s in weak] == [s.img_path for s in strong]
        assert all('unlabelled' in s.img_path for s in weak)
        assert [s.flip for s in weak] == [s.flip for s in strong]
        assert [s.img_shape for s in weak] == [s.img_shape for s in strong]
    assert padded > 0  # some crops were smaller than CROP and got padded


def test_runner_builds_the_semi_supervised_loader_from_config(data_root):
    unlabelled = dict(type='UnlabeledImageDataset', data_root=data_root,
                      img_dir='unlabelled', metainfo=METAINFO)
    cfg = dict(
        batch_size=4,
        num_workers=0,
        sampler=dict(type='MultiSourceRatioSampler', batch_size=4,
                     source_ratio=[1, 1]),
        dataset=dict(type='ConcatDataset', datasets=[
            dict(unlabelled, pipeline=[
                dict(type='LoadImageAsStored'), *GEOMETRY,
                dict(type='MultiBranch', branch_field=BRANCHES, sup=[PACK])
            ]),
            dict(unlabelled, pipeline=UNLABELLED_PIPELINE),
        ]))
    loader = Runner.build_dataloader(cfg, seed=0)
    assert isinstance(loader.sampler, MultiSourceRatioSampler)
    assert loader.sampler.seed == 0
    out = make_preprocessor(size=CROP)(next(iter(loader)), True)
    assert {b: x.shape[0] for b, x in out['inputs'].items()} == dict(
        sup=2, unsup_weak=2, unsup_strong=2)
