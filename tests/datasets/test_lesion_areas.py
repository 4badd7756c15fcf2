"""Lesion areas of the labelled training images (hermes_mm.datasets
.lesion_areas) and tools/lesion_areas.py, on the hand-made tiny BUSI."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.datasets.lesion_areas import (labelled_lesion_areas,
                                             lesion_area_summary,
                                             lesion_class_indices)
from hermes_mm.datasets.splits import make_split, save_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOADING = [dict(type='LoadImageAsStored'),
           dict(type='LoadMultiTaskAnnotations')]


def busi_cfg(root, split_file, subsets=('labeled', 'unlabeled'),
             segmentor='MultiTaskSegmentor'):
    datasets = [
        dict(type='BUSIDataset', data_root=root, split_file=split_file,
             subset=subset,
             pipeline=LOADING + [dict(type='PackMultiTaskInputs')])
        for subset in subsets
    ]
    return Config(dict(
        model=dict(type='HermesSegmentor', segmentor=dict(type=segmentor)),
        train_dataloader=dict(dataset=dict(type='ConcatDataset',
                                           datasets=datasets))))


@pytest.fixture
def split(tiny_busi, tmp_path):
    # every image with a lesion labelled: their areas are all known
    lesion = [r for r in tiny_busi.order if tiny_busi.masks[r].any()]
    split = dict(labeled=lesion + ['normal/normal (1).png'],
                 unlabeled=['normal/normal (2).png'], val=[], test=[])
    path = str(tmp_path / 'split.json')
    save_split(split, path)
    return split, path


def test_areas_are_the_merged_masks_of_labelled_lesion_images(
        tiny_busi, split):
    init_default_scope('mmseg')
    subsets, path = split
    areas = labelled_lesion_areas(busi_cfg(tiny_busi.root, path))
    expected = [float(tiny_busi.masks[r].mean())
                for r in subsets['labeled'] if tiny_busi.masks[r].any()]
    assert areas == pytest.approx(expected)
    assert len(areas) == 5  # the normal image adds nothing
    summary = lesion_area_summary(areas)
    assert summary['min'] == pytest.approx(min(expected))
    assert summary['median'] == pytest.approx(float(np.median(expected)))
    assert summary['labelled_lesions'] == 5


def test_lesion_class_indices_follow_the_class_order(tiny_busi, split):
    init_default_scope('mmseg')
    _, path = split
    cfg = busi_cfg(tiny_busi.root, path)
    assert lesion_class_indices(cfg) == [0, 1]  # benign, malignant
    for ds in cfg.train_dataloader.dataset.datasets:
        ds.metainfo = dict(cls_classes=('normal', 'malignant', 'benign'),
                           lesion_classes=('benign', 'malignant'))
    assert lesion_class_indices(cfg) == [1, 2]
    # every class a lesion class: an empty mask has no class to go to
    for ds in cfg.train_dataloader.dataset.datasets:
        ds.metainfo['lesion_classes'] = ('benign', 'malignant', 'normal')
    assert lesion_class_indices(cfg) is None
    assert lesion_class_indices(busi_cfg(
        tiny_busi.root, path, subsets=('unlabeled', ))) is None


def test_no_labelled_dataset_is_an_error_naming_what_was_found(
        tiny_busi, tmp_path):
    init_default_scope('mmseg')
    path = str(tmp_path / 'split.json')
    save_split(make_split([(r, tiny_busi.labels[r]) for r in tiny_busi.order],
                          0.5, 0), path)
    with pytest.raises(ValueError, match="subset='labeled'.*'unlabeled'"):
        labelled_lesion_areas(
            busi_cfg(tiny_busi.root, path, subsets=('unlabeled', )))


def test_tool_prints_summary_and_cfg_option(tiny_busi, split, tmp_path):
    subsets, path = split
    cfg_file = str(tmp_path / 'cfg.py')
    busi_cfg('data/BUSI', 'missing.json').dump(cfg_file)
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'lesion_areas.py'),
         cfg_file, '--data-root', tiny_busi.root, '--split-file', path,
         '--json'],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    smallest = min(float(tiny_busi.masks[r].mean())
                   for r in subsets['labeled'] if tiny_busi.masks[r].any())
    assert summary['min'] == pytest.approx(smallest)
    key, value = summary['cfg_option'].split('=')
    assert key == 'model.segmentor.test_cfg.min_lesion_area'
    # default: half the smallest, rounded down to 4 decimals
    assert summary['scale'] == 0.5
    assert smallest / 2 - 1e-4 < float(value) <= smallest / 2
    # BUSI: benign, malignant show a lesion, normal does not
    assert summary['lesion_classes_option'] == (
        'model.segmentor.test_cfg.lesion_classes=[0,1]')


def test_tool_refuses_a_segmentor_that_ignores_the_option(
        tiny_busi, split, tmp_path, load_script):
    tool = load_script('tools/lesion_areas.py')
    _, path = split
    cfg_file = str(tmp_path / 'plain.py')
    busi_cfg(tiny_busi.root, path, segmentor='EncoderDecoder').dump(cfg_file)
    with pytest.raises(SystemExit, match="'EncoderDecoder'; only a "
                       'MultiTaskSegmentor'):
        tool.main([cfg_file])
    with pytest.raises(SystemExit, match='--scale'):
        tool.main([cfg_file, '--scale', '0'])
