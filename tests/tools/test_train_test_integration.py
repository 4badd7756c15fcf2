"""The CLI acceptance path end to end, on a fresh synthetic BUSI-layout
folder: make_synthetic_busi -> make_split -> train configs/supervised_busi.py
(30 iterations) -> --resume to 40 -> test --out-metrics; and the Hermes demo
config trained a few iterations with validation of both networks.

The tools run in-process through their ``main(argv)`` (one import of the
stack). ``--cfg-options`` shrink the shipped configs to the small demo
backbone at 64x64; the options are derived from the configs themselves, so
the test follows their pipelines instead of hard-coding indices.
"""
import glob
import importlib.util
import json
import math
import os
import os.path as osp
import time

import cv2
import pytest
import torch
from mmengine.config import Config

import hermes_mm  # noqa: F401  (compat first)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SUPERVISED = osp.join(REPO, 'configs', 'supervised_busi.py')
HERMES_DEMO = osp.join(REPO, 'configs', 'demo', 'hermes_synthetic.py')
SMALL_MODEL = osp.join(REPO, 'configs', 'demo', 'supervised_synthetic.py')
SIZE = 64
NUM_IMAGES = 30
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
REQUIRED_METRICS = ('seg/dice', 'seg/iou', 'seg/hd95', 'cls/accuracy',
                    'cls/f1', 'cls/auc')


def load_tool(name):
    path = osp.join(REPO, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'hermes_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def walk(node, path):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from walk(value, f'{path}.{i}')


def tiny_options(config, name):
    """``--cfg-options`` for a fast CPU run of ``config``: 64x64 crops and
    padding, the small demo backbone, no worker processes, unique
    logger/visualizer names."""
    cfg = Config.fromfile(config)
    size = f'({SIZE},{SIZE})'
    opts = [f'experiment_name={name}', f'visualizer.name=vis_{name}']
    for root in ('model', ) + LOADERS:
        for path, node in walk(cfg[root].to_dict(), root):
            key = dict(RandomResize='scale', Resize='scale',
                       RandomCrop='crop_size',
                       SegDataPreProcessor='size').get(node.get('type'))
            if key:
                opts.append(f'{path}.{key}={size}')
            if node.get('type') == 'SyntheticBUSIDataset':
                opts.append(f'{path}.num={NUM_IMAGES}')
    for loader in LOADERS:
        opts += [f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    small = Config.fromfile(SMALL_MODEL).model
    hermes = cfg.model.type == 'HermesSegmentor'
    student = 'model.segmentor' if hermes else 'model'
    student_cfg = cfg.model.segmentor if hermes else cfg.model
    # offline and a smaller network: no ImageNet weights (README's option)
    opts.append(f'{student}.backbone.init_cfg=None')
    for part, keys in (('backbone', ('depth', 'base_channels',
                                     'stem_channels')),
                       ('task_neck', ('in_channels', )),
                       ('decode_head', ('in_channels', 'channels')),
                       ('cls_head', ('in_channels', ))):
        for key in keys:
            if key not in student_cfg[part] and part != 'backbone':
                continue  # e.g. TaskSplitNeck has no channels
            value = small[part][key]
            if isinstance(value, (list, tuple)):
                value = '[' + ','.join(map(str, value)) + ']'
            opts.append(f'{student}.{part}.{key}={value}')
    if hermes:  # projectors read the small backbone's levels too
        if cfg.model.get('img_contrast') is not None:
            opts.append('model.img_contrast.projector.in_channels='
                        f'{small.cls_head.in_channels}')
        if cfg.model.get('pix_contrast') is not None:
            level = small.task_neck.in_channels[
                cfg.model.pix_contrast.in_index]
            opts.append(
                f'model.pix_contrast.projector.in_channels={level}')
    return opts


@pytest.fixture(autouse=True)
def fast_and_clean(monkeypatch):
    # One intra-op thread: tiny convolutions on 2 shared cores run several
    # times faster than with two contending OpenMP threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv('LOCAL_RANK', '0')  # the tools set it otherwise
    yield
    torch.set_num_threads(threads)


def read(path):
    with open(path) as f:
        return f.read()


def logs(work_dir):
    return {p: read(p) for p in glob.glob(osp.join(work_dir, '*', '*.log'))}


def test_split_train_resume_test(tmp_path):
    data, split = str(tmp_path / 'BUSI'), str(tmp_path / 'split.json')
    work, test_work = str(tmp_path / 'work'), str(tmp_path / 'test_work')
    metrics_file = str(tmp_path / 'out' / 'metrics.json')

    # 1. a fresh BUSI-layout folder with BUSI's quirks
    assert load_tool('make_synthetic_busi').main(
        [data, '--num', str(NUM_IMAGES), '--seed', '0', '--size', '64',
         '80']) == 0
    assert sorted(os.listdir(data)) == ['benign', 'malignant', 'normal']
    masks = glob.glob(osp.join(data, '*', '*_mask*.png'))
    assert any(m.endswith('_mask_1.png') for m in masks)
    channels = {cv2.imread(m, cv2.IMREAD_UNCHANGED).ndim == 3 and
                cv2.imread(m, cv2.IMREAD_UNCHANGED).shape[2] for m in masks}
    assert 4 in channels  # RGBA masks
    normal_masks = glob.glob(osp.join(data, 'normal', '*_mask.png'))
    assert normal_masks and all(
        cv2.imread(m, cv2.IMREAD_UNCHANGED).max() == 0 for m in normal_masks)

    # 2. split
    load_tool('make_split').main(
        [data, '--labeled-ratio', '0.25', '--seed', '0', '--out', split])
    with open(split) as f:
        subsets = json.load(f)
    assert all(subsets[k] for k in ('labeled', 'unlabeled', 'val', 'test'))

    # 3. train 30 iterations, validating once at the end
    train = load_tool('train')
    common = [SUPERVISED, '--data-root', data, '--split-file', split,
              '--work-dir', work]
    schedule = ['train_dataloader.batch_size=2', 'train_cfg.val_interval=1000',
                'default_hooks.logger.interval=10',
                'default_hooks.checkpoint.interval=1000']
    stamp = time.time_ns()
    train.main(common + ['--cfg-options', 'train_cfg.max_iters=30'] +
               schedule + tiny_options(SUPERVISED, f'sup_{stamp}'))
    assert osp.isfile(osp.join(work, 'iter_30.pth'))
    (first_log, first), = logs(work).items()
    assert 'Iter(train) [30/30]' in first and 'seg/dice' in first

    # 4. --resume to 40 iterations
    train.main(common + ['--resume', '--cfg-options', 'train_cfg.max_iters=40']
               + schedule + tiny_options(SUPERVISED, f'sup_resumed_{stamp}'))
    second = {p: t for p, t in logs(work).items() if p != first_log}
    (_, resumed), = second.items()
    assert 'resumed epoch: 0, iter: 30' in resumed
    assert 'Iter(train) [40/40]' in resumed
    assert 'Iter(train) [10/40]' not in resumed  # it did not start over
    checkpoint = osp.join(work, 'iter_40.pth')
    assert osp.isfile(checkpoint)
    meta = torch.load(checkpoint, map_location='cpu')['meta']
    assert meta['iter'] == 40

    # 5. test, metrics to JSON
    returned = load_tool('test').main(
        [SUPERVISED, checkpoint, '--data-root', data, '--split-file', split,
         '--work-dir', test_work, '--out-metrics', metrics_file,
         '--cfg-options'] + tiny_options(SUPERVISED, f'sup_test_{stamp}'))
    with open(metrics_file) as f:
        metrics = json.load(f)
    for key in REQUIRED_METRICS:
        value = metrics[key]
        assert isinstance(value, float) and math.isfinite(value), key
        if key == 'seg/hd95':
            assert value >= 0
        else:
            assert 0 <= value <= 100, (key, value)
    assert metrics['seg/dice'] == pytest.approx(float(returned['seg/dice']))


def semi_options(config, name, per_source, iters, val_interval,
                 log_interval):
    """``tiny_options`` plus a short teacher/student run: ``per_source``
    labelled + ``per_source`` unlabelled images per batch, every
    unsupervised term on from iteration 0, ``iters`` iterations, no
    checkpoints (those of this model are covered by the hook tests)."""
    batch = 2 * per_source
    return tiny_options(config, name) + [
        f'train_dataloader.batch_size={batch}',
        f'train_dataloader.sampler.batch_size={batch}',
        f'train_dataloader.sampler.source_ratio=[{per_source},{per_source}]',
        'model.unsup_weight.start=0', 'model.contrast_weight.start=0',
        'model.consistency_weight.start=0',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={val_interval}',
        f'default_hooks.logger.interval={log_interval}',
        'default_hooks.checkpoint.save_last=False',
        'default_hooks.checkpoint.interval=1000',
        'default_hooks.checkpoint.save_best=None',
    ]


def test_hermes_demo_trains_and_validates_both_networks(tmp_path):
    data = str(tmp_path / 'synthetic')  # absent: generated on first use
    work = str(tmp_path / 'work')
    name = f'hermes_e2e_{time.time_ns()}'
    options = semi_options(HERMES_DEMO, name, per_source=2, iters=4,
                           val_interval=4, log_interval=2)
    load_tool('train').main([HERMES_DEMO, '--data-root', data, '--work-dir',
                             work, '--cfg-options'] + options)
    assert osp.isfile(osp.join(data, 'hermes_synthetic.json'))
    (_, log), = logs(work).items()
    train_lines = [ln for ln in log.splitlines() if 'Iter(train) [4/4]' in ln]
    assert train_lines
    for key in ('zone.seg.reliable', 'zone.seg.ambiguous',
                'zone.seg.unreliable', 'zone.cls.reliable', 'thr.seg.low.0',
                'unsup.seg.loss_ce', 'con.loss_con_img'):
        assert key in train_lines[0], key
    val_lines = [ln for ln in log.splitlines()
                 if 'Iter(val)' in ln and 'teacher/seg/dice' in ln]
    assert val_lines and 'student/seg/dice' in val_lines[0]


SEMI_CONFIGS = {
    # config -> loss-key prefixes that must be absent from its log
    'hermes_busi.py': (),
    'ablations/hermes_busi_no_itas.py': ('sal.',),
    'ablations/hermes_busi_single_threshold.py': (),
    'ablations/hermes_busi_no_contrast.py': ('con.',),
    'ablations/hermes_busi_no_pix_contrast.py': ('con.loss_con_pix',),
    'ablations/hermes_busi_no_consistency.py': ('ict.',),
    'baselines/mean_teacher_busi.py': ('con.', 'ict.', 'sal.'),
}


@pytest.fixture(scope='module')
def busi_folder(tmp_path_factory):
    """A tiny BUSI-layout folder and a 1/4 split, shared by the runs."""
    root = tmp_path_factory.mktemp('busi_semi')
    data, split = str(root / 'BUSI'), str(root / 'split.json')
    load_tool('make_synthetic_busi').main(
        [data, '--num', '24', '--seed', '1', '--size', '64', '72'])
    load_tool('make_split').main(
        [data, '--labeled-ratio', '0.25', '--seed', '0', '--out', split])
    return data, split


@pytest.mark.parametrize('config', sorted(SEMI_CONFIGS))
def test_semi_config_trains_two_iterations(config, busi_folder, tmp_path):
    """Every shipped Hermes / ablation / mean-teacher config trains 2
    iterations (small backbone, 64x64, batch 2+2: the labelled images and
    the strong views are separate BN batches) with finite losses, and
    the component it removes is absent from the loss dict."""
    data, split = busi_folder
    path = osp.join(REPO, 'configs', config)
    name = f'semi_{osp.basename(config)[:-3]}_{time.time_ns()}'
    options = semi_options(path, name, per_source=2, iters=2,
                           val_interval=1000, log_interval=1)
    work = str(tmp_path / 'work')
    load_tool('train').main([path, '--data-root', data, '--split-file', split,
                             '--work-dir', work, '--cfg-options'] + options)
    (_, log), = logs(work).items()
    last = [ln for ln in log.splitlines() if 'Iter(train) [2/2]' in ln]
    assert last, log[-2000:]
    terms = dict(
        part.split(': ') for part in last[0].split('  ')
        if ': ' in part and ('loss' in part or 'zone' in part))
    assert 'sup.seg.loss_ce' in terms and 'unsup.seg.loss_ce' in terms
    for key, value in terms.items():
        assert math.isfinite(float(value)), (key, value)
    for prefix in SEMI_CONFIGS[config]:
        assert not any(k.startswith(prefix) for k in terms), (prefix, terms)
