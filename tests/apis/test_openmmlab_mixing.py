"""Hermes with MMSeg / MMPretrain backbones and heads, as OpenMMLab users mix
them: each combination builds from a config and trains 2 iterations on a
tiny synthetic set (64x64); a backbone loads a local checkpoint through
``init_cfg=dict(type='Pretrained')``; and MMSegmentation's own
``tools/train.py`` (``Runner.from_cfg`` + ``custom_imports``) trains a
hermes_mm config unchanged.

The builder below (``hermes_cfg``) is the recipe for swapping parts: set
the backbone, match ``ITASNeck.in_channels`` to the backbone's output
levels, point the decode head at the levels it reads, and size the
classification head / projectors to the levels they read.
"""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional

import mmengine.config.config as mmengine_config
import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import hermes_mm  # noqa: F401  (compat first)
from hermes_mm.datasets.synthetic_busi_dataset import ensure_synthetic_busi
from hermes_mm.registry import MODELS
from hermes_mm.utils import rewrite_datasets

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')
MMSEG_TRAIN = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                       'train.py')
CHANNELS = [8, 16, 32, 64]


def hermes_cfg(backbone: dict,
               decode_head: dict,
               channels: List[int],
               data_root: str,
               work_dir: str,
               cls_in_index: int = -1,
               pix_in_index: int = 1,
               neck: Optional[dict] = None) -> Config:
    """The tiny Hermes config with another backbone / decode head.

    Args:
        backbone (dict): Any registered backbone (``mmpretrain.`` prefix
            for MMPretrain ones).
        decode_head (dict): Any MMSeg decode head (``num_classes=2``).
        channels (list[int]): Channels of the feature levels the task neck
            receives (backbone outputs, or the neck's).
        data_root (str): Synthetic data folder.
        work_dir (str): Runner work dir.
        cls_in_index (int): Level the classification branch reads.
        pix_in_index (int): Level the pixel projector reads.
        neck (dict, optional): A plain MMSeg neck before the task neck.
    """
    cfg = Config.fromfile(TINY_HERMES)
    seg = cfg.model.segmentor
    seg.backbone = backbone
    seg.neck = neck
    seg.task_neck = dict(
        type='ITASNeck',
        in_channels=channels,
        cls_in_index=cls_in_index,
        saliency_channels=8)
    seg.decode_head = decode_head
    seg.cls_head.in_channels = channels[cls_in_index]
    cfg.model.img_contrast.projector.in_channels = channels[cls_in_index]
    cfg.model.pix_contrast.projector.in_channels = channels[pix_in_index]
    cfg.model.pix_contrast.in_index = pix_in_index
    rewrite_datasets(cfg, data_root=data_root)
    cfg.work_dir = work_dir
    # Training only: no validation, a checkpoint at the end.
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.default_hooks.logger.interval = 1
    return cfg


def _loss_decode():
    return [
        dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        dict(type='DiceLoss', loss_weight=1.0),
    ]


COMBINATIONS = dict(
    mit_segformer=dict(
        backbone=dict(
            type='MixVisionTransformer',
            embed_dims=8,
            num_stages=4,
            num_layers=[1, 1, 1, 1],
            num_heads=[1, 2, 4, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3)),
        decode_head=dict(
            type='SegformerHead',
            in_channels=CHANNELS,
            in_index=[0, 1, 2, 3],
            channels=16,
            num_classes=2,
            loss_decode=_loss_decode()),
        channels=CHANNELS),
    unet_fcn=dict(
        backbone=dict(
            type='UNet',
            base_channels=8,
            num_stages=4,
            strides=(1, 1, 1, 1),
            enc_num_convs=(1, 1, 1, 1),
            dec_num_convs=(1, 1, 1),
            downsamples=(True, True, True),
            enc_dilations=(1, 1, 1, 1),
            dec_dilations=(1, 1, 1)),
        # UNet returns decoder levels coarse -> fine: 64, 32, 16, 8 ch.
        decode_head=dict(
            type='FCNHead',
            in_channels=8,
            in_index=3,
            channels=8,
            num_convs=1,
            concat_input=False,
            num_classes=2,
            loss_decode=_loss_decode()),
        channels=[64, 32, 16, 8],
        cls_in_index=0),
    mmpretrain_resnet_uper=dict(
        backbone=dict(
            type='mmpretrain.ResNet',
            depth=18,
            stem_channels=8,
            base_channels=8,
            out_indices=(0, 1, 2, 3)),
        decode_head=dict(
            type='UPerHead',
            in_channels=CHANNELS,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2),
            channels=16,
            num_classes=2,
            loss_decode=_loss_decode()),
        channels=CHANNELS),
    mmpretrain_convnext_uper=dict(
        backbone=dict(
            type='mmpretrain.ConvNeXt',
            arch=dict(depths=[1, 1, 1, 1], channels=CHANNELS),
            out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False),
        decode_head=dict(
            type='UPerHead',
            in_channels=CHANNELS,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2),
            channels=16,
            num_classes=2,
            loss_decode=_loss_decode()),
        channels=CHANNELS),
)
RESNET_FCN = dict(
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        base_channels=8,
        stem_channels=8,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=3,
        channels=16,
        num_convs=1,
        concat_input=False,
        num_classes=2,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_decode=_loss_decode()),
    channels=CHANNELS)


@pytest.fixture(autouse=True, scope='module')
def fast_cpu():
    """Test speed only: one intra-op thread (two contend on a shared 2-core
    machine: tiny convolutions run 10-40x slower) and no yapf formatting
    of the config text (MMEngine formats it ~5 times per Runner, ~2.5 s
    each here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmengine_config, 'FormatCode', _no_format)
        yield
    torch.set_num_threads(threads)


def _no_format(text, **kwargs):
    return text, False


def fast_subprocess_env(tmp_path) -> dict:
    """Environment for a Python subprocess with the same speed settings
    (a ``sitecustomize`` module patching the formatter)."""
    site = tmp_path / 'site'
    site.mkdir(exist_ok=True)
    (site / 'sitecustomize.py').write_text(
        'import mmengine.config.config as _config\n'
        '_config.FormatCode = lambda text, **kwargs: (text, False)\n')
    return dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mixing') / 'synthetic')
    return ensure_synthetic_busi(root, num=24, seed=0)


def _params(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class SnapshotHook(Hook):
    """Keeps the student's parameters as the first iteration starts
    (after the runner's weight initialisation)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 0:
            self.params = _params(runner.model.student)


@pytest.mark.parametrize('name', sorted(COMBINATIONS))
def test_trains_two_iterations(name, data_root, tmp_path):
    cfg = hermes_cfg(
        data_root=data_root, work_dir=str(tmp_path), **COMBINATIONS[name])
    torch.manual_seed(0)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert type(model.student.backbone).__name__ == cfg.model.segmentor[
        'backbone']['type'].split('.')[-1]
    snapshot = SnapshotHook()
    runner.register_hook(snapshot)
    runner.train()
    before, after = snapshot.params, _params(model.student)
    # Gradients reached the backbone and both heads.
    for part in ('backbone.', 'decode_head.', 'cls_head.'):
        changed = [
            k for k in before
            if k.startswith(part) and not torch.equal(before[k], after[k])
        ]
        assert changed, f'{name}: no {part} parameter was updated'
    assert all(torch.isfinite(v).all() for v in after.values())
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


def test_pretrained_backbone_from_local_checkpoint(data_root, tmp_path):
    init_default_scope('mmseg')
    backbone_cfg = dict(RESNET_FCN['backbone'], norm_cfg=dict(type='BN'))
    torch.manual_seed(123)
    source = MODELS.build(backbone_cfg)
    with torch.no_grad():
        for param in source.parameters():
            param.normal_()
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    ckpt = str(tmp_path / 'backbone.pth')
    torch.save(source.state_dict(), ckpt)

    cfg = hermes_cfg(
        data_root=data_root,
        work_dir=str(tmp_path),
        **dict(
            RESNET_FCN,
            backbone=dict(
                backbone_cfg,
                init_cfg=dict(type='Pretrained', checkpoint=ckpt))))
    model = MODELS.build(cfg.model)
    expected = source.state_dict()
    assert not torch.equal(model.student.backbone.stem[0].weight,
                           expected['stem.0.weight'])
    model.init_weights()
    for net in (model.student, model.teacher.module):
        loaded = net.backbone.state_dict()
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(loaded[key], value), key


def test_mmseg_tools_train_runs_config_unchanged(data_root, tmp_path):
    """MMSegmentation's own tools/train.py: Config.fromfile imports
    hermes_mm through custom_imports; Runner.from_cfg trains; SyncBN (the
    config's norm) is reverted to BN on one process."""
    cfg = hermes_cfg(
        data_root=data_root, work_dir=str(tmp_path / 'work'), **RESNET_FCN)
    assert 'hermes_mm' in cfg.custom_imports['imports']
    cfg_file = str(tmp_path / 'hermes_resnet_fcn.py')
    cfg.dump(cfg_file)
    # The repo is not on the path: hermes_mm is imported as installed.
    env = fast_subprocess_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, MMSEG_TRAIN, cfg_file],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert 'SyncBatchNorm (SyncBN) layers in the model will be automatically' \
        ' reverted' in output
    assert osp.isfile(str(tmp_path / 'work' / 'iter_2.pth'))
