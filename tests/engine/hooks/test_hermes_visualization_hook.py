"""HermesVisualizationHook on a real Runner with the tiny Hermes model:
pseudo-label panels only on due iterations and matching the model's zones,
validation panels for teacher and student, and ``tools/test.py
--show-dir`` writing one panel per test image."""
import importlib.util
import os.path as osp

import cv2
import mmengine.config.config as mmengine_config
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import VISBACKENDS
from mmengine.runner import Runner
from mmengine.visualization import BaseVisBackend

import hermes_mm.engine.hooks.hermes_visualization_hook  # noqa: F401
import hermes_mm.visualization  # noqa: F401
from hermes_mm.datasets.synthetic_busi_dataset import ensure_synthetic_busi
from hermes_mm.engine.hooks.hermes_visualization_hook import (
    HermesVisualizationHook, image_key)
from hermes_mm.utils import rewrite_datasets
from hermes_mm.visualization.drawing import (DEFAULT_ZONE_PALETTE, ZONES,
                                             colorize, denormalize, zone_map)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')
SIZE = 64


@VISBACKENDS.register_module(force=True)
class HookTestVisBackend(BaseVisBackend):
    """Keeps every image it is given (a stand-in for TensorBoard/W&B)."""

    def __init__(self, save_dir=None):
        super().__init__(save_dir)
        self.images = []

    def _init_env(self):
        pass

    @property
    def experiment(self):
        return self

    def add_image(self, name, image, step=0, **kwargs):
        self.images.append((name, image.copy(), step))


@pytest.fixture(autouse=True, scope='module')
def fast_cpu():
    """Test speed only: one intra-op thread and no yapf formatting of the
    config text (see tests/apis/test_openmmlab_mixing.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmengine_config, 'FormatCode',
                      lambda text, **kwargs: (text, False))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """2 iterations (pseudo-label panels at iteration 2 only) + validation
    of teacher and student."""
    tmp = tmp_path_factory.mktemp('vis_hook')
    data_root = ensure_synthetic_busi(str(tmp / 'data'), num=24, seed=0)
    cfg = Config.fromfile(TINY_HERMES)
    rewrite_datasets(cfg, data_root=data_root)
    cfg.work_dir = str(tmp / 'work')
    cfg.visualizer.vis_backends = [dict(type='HookTestVisBackend')]
    # A fresh instance (visualizers are global, looked up by name).
    cfg.visualizer.name = f'visualizer_{tmp.name}'
    # Thresholds an untrained teacher's pixels straddle, so every zone
    # shows up (binary confidence is in [0.5, 1]).
    cfg.model.pseudo_labeler.seg_threshold = dict(
        type='FixedDualThreshold', tau_low=0.51, tau_high=0.53)
    cfg.default_hooks.visualization = dict(
        type='HermesVisualizationHook',
        draw=True,
        interval=1,
        pseudo_label_interval=2,
        max_pseudo_label_images=2)
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks
                if isinstance(h, HermesVisualizationHook))
    records, samples = [], []
    draw_pseudo = hook.draw_pseudo_labels
    hook.draw_pseudo_labels = lambda r, m, record: (
        records.append((r.iter, record)), draw_pseudo(r, m, record))
    add_datasample = runner.visualizer.add_datasample

    def spy(name, image, data_sample=None, **kwargs):
        samples.append((name, image, data_sample))
        return add_datasample(name, image, data_sample=data_sample, **kwargs)

    runner.visualizer.add_datasample = spy
    runner.train()
    backend = runner.visualizer.get_backend('HookTestVisBackend')
    return dict(
        runner=runner,
        records=records,
        samples=samples,
        images=backend.images,
        cfg=cfg,
        data_root=data_root,
        tmp=tmp)


def test_pseudo_label_panels_only_when_due(trained):
    model = trained['runner'].model
    # Asked before iteration 2 only (interval 2); the request is one-shot.
    assert [it for it, _ in trained['records']] == [1]
    assert model.pseudo_labeler.record_next is False
    assert model.pseudo_labeler.last_record is None
    panels = [(n, img, s) for n, img, s in trained['images']
              if n.startswith('train_pseudo_label_')]
    assert [(n, s) for n, _, s in panels] == [
        ('train_pseudo_label_0', 2), ('train_pseudo_label_1', 2)]
    _, record = trained['records'][0]
    assert record['weak_inputs'].shape == (2, 3, SIZE, SIZE)
    assert record['seg_reliable'].shape == (2, SIZE, SIZE)
    assert not record['weak_inputs'].requires_grad
    assert record['weak_inputs'].device.type == 'cpu'
    # Zones partition the pixels; with these thresholds several occur, so
    # the colour check below compares more than one colour.
    assert not (record['seg_reliable'] & record['seg_ambiguous']).any()
    codes = zone_map(record['seg_reliable'], record['seg_ambiguous'],
                     record['seg_pseudo_label'], record['region'])
    assert len(set(np.unique(codes)) - {ZONES.index('outside')}) >= 2
    preprocessor = model.data_preprocessor
    palette = [DEFAULT_ZONE_PALETTE[z] for z in ZONES]
    for i, (_, panel, _) in enumerate(panels):
        # weak | strong | zones | legend
        assert panel.shape == (SIZE, 4 * SIZE + 6, 3)
        np.testing.assert_array_equal(
            panel[:, :SIZE],
            denormalize(record['weak_inputs'][i], preprocessor.mean,
                        preprocessor.std, True))
        np.testing.assert_array_equal(
            panel[:, SIZE + 2:2 * SIZE + 2],
            denormalize(record['strong_inputs'][i], preprocessor.mean,
                        preprocessor.std, True))
        expected = colorize(
            zone_map(record['seg_reliable'][i], record['seg_ambiguous'][i],
                     record['seg_pseudo_label'][i], record['region'][i]),
            palette)
        # Below the text box the zone panel is exactly the zone colours.
        np.testing.assert_array_equal(panel[20:, 2 * SIZE + 4:3 * SIZE + 4],
                                      expected[20:])


def test_validation_panels_for_teacher_and_student(trained):
    val = trained['runner'].val_dataloader.dataset
    keys = sorted(
        osp.splitext(val.get_data_info(i)['img_rel'])[0].replace('/', '__')
        for i in range(len(val)))
    names = [n for n, _, _ in trained['images'] if n.startswith('val_')]
    # one tag per drawn image slot, not per image (max_val_panels=8)
    drawn = min(len(val), 8)
    for predictor in ('teacher', 'student'):
        assert [n for n in names if n.startswith(f'val_{predictor}_')] == [
            f'val_{predictor}_{k}' for k in range(drawn)]
    visualizer = trained['runner'].visualizer
    assert len(trained['samples']) == 2 * drawn > 0
    titles = []
    for name, image, sample in trained['samples']:
        # The original image, its ground truth and the prediction, drawn at
        # the original size; the recorded panel is that drawing.
        assert image.shape[:2] == tuple(sample.ori_shape)
        assert sample.gt_sem_seg.shape == sample.pred_sem_seg.shape == tuple(
            sample.ori_shape)
        panel = dict((n, img) for n, img, _ in trained['images'])[name]
        title = image_key(sample)
        titles.append(title.replace('/', '__'))
        np.testing.assert_array_equal(
            panel, visualizer.draw_multitask(image, sample, title=title))
        assert panel.shape[1] == 3 * image.shape[1] + 4
    # the panels name their images, the same ones for both networks
    assert titles[:drawn] == titles[drawn:]
    assert set(titles) <= set(keys) and len(set(titles)) == drawn


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'hermes_tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tools_test_show_dir_writes_one_panel_per_image(trained):
    tmp = trained['tmp']
    cfg = Config.fromfile(TINY_HERMES)
    # The shipped form: MMSeg's hook and visualizer, upgraded by test.py.
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook')
    cfg.visualizer.type = 'SegLocalVisualizer'
    cfg_file = str(tmp / 'tiny_hermes_show.py')
    cfg.dump(cfg_file)
    show_dir = tmp / 'show'
    metrics_file = tmp / 'metrics.json'
    tool = _load_tool('test')
    metrics = tool.main([
        cfg_file,
        osp.join(trained['cfg'].work_dir, 'iter_2.pth'), '--data-root',
        trained['data_root'], '--work-dir',
        str(tmp / 'test_work'), '--show-dir',
        str(show_dir), '--out-metrics',
        str(metrics_file)
    ])
    assert 'seg/dice' in metrics and metrics_file.is_file()
    test_set = Runner.build_dataloader(
        dict(trained['runner'].cfg.test_dataloader)).dataset
    expected = sorted(
        image_key_of(test_set.get_data_info(i))
        for i in range(len(test_set)))
    written = sorted(
        osp.splitext(osp.relpath(str(p), str(show_dir)))[0]
        for p in show_dir.rglob('*.png'))
    assert written == expected and len(written) == len(test_set)
    for i in range(len(test_set)):
        info = test_set.get_data_info(i)
        image = cv2.imread(info['img_path'])
        panel = cv2.imread(
            str(show_dir / (image_key_of(info) + '.png')))
        assert panel.shape == (image.shape[0], 3 * image.shape[1] + 4, 3)
        np.testing.assert_array_equal(panel[:, :image.shape[1]], image)


def image_key_of(info: dict) -> str:
    return osp.splitext(info['img_rel'])[0]


def test_image_key_uses_relative_path():
    from mmseg.structures import SegDataSample
    sample = SegDataSample(
        metainfo=dict(img_path='/d/benign/x (1).png',
                      img_rel='benign/x (1).png'))
    assert image_key(sample) == 'benign/x (1)'
    sample = SegDataSample(metainfo=dict(img_path='/d/a/y.jpg'))
    assert image_key(sample) == 'y'


def test_panel_tags_are_bounded_per_loop():
    """Real BUSI (~160 val images): at most max_val_panels tags per
    network and loop, the same tags again at the next validation."""
    hook = HermesVisualizationHook(draw=True, interval=1, max_val_panels=3)
    tags = [hook._panel_tag('val', 'teacher') for _ in range(5)]
    assert tags == ['val_teacher_0', 'val_teacher_1', 'val_teacher_2', None,
                    None]
    assert hook._panel_tag('val', 'student') == 'val_student_0'
    hook.before_val(None)
    assert hook._panel_tag('val', 'teacher') == 'val_teacher_0'
    assert hook._panel_tag('test', None) == 'test_0'
    with pytest.raises(ValueError, match='max_val_panels'):
        HermesVisualizationHook(max_val_panels=-1)


def test_hook_arguments_are_validated():
    with pytest.raises(ValueError, match='pseudo_label_interval'):
        HermesVisualizationHook(pseudo_label_interval=-1)
    with pytest.raises(ValueError, match='max_pseudo_label_images'):
        HermesVisualizationHook(max_pseudo_label_images=0)
