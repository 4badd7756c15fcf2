"""HermesInferencer: every input form gives the same per-image results,
masks at the original size, probabilities that sum to 1, the class names
saved in the checkpoint, Hermes' predict_on network, unique overlay files
and the CSV contract."""
import csv
import os.path as osp
import shutil

import cv2
import mmengine.config.config as mmengine_config
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hermes_mm.apis import HermesInferencer, collect_inputs
from hermes_mm.apis.hermes_inferencer import csv_header, unique_paths
from hermes_mm.datasets.synthetic_busi_dataset import ensure_synthetic_busi
from hermes_mm.registry import INFERENCERS, MODELS
from hermes_mm.utils import rewrite_datasets
from hermes_mm.visualization.drawing import overlay_lines

CONFIGS = osp.join(osp.dirname(osp.abspath(__file__)), 'configs')
# Deliberately not the config's names: they must come from the checkpoint.
SAVED_CLASSES = ('cyst', 'carcinoma', 'healthy')


@pytest.fixture(autouse=True, scope='module')
def fast_cpu():
    """Test speed only: one intra-op thread, no yapf config formatting
    (see test_openmmlab_mixing.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmengine_config, 'FormatCode',
                      lambda text, **kwargs: (text, False))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('infer') / 'synthetic')
    return ensure_synthetic_busi(root, num=24, seed=0)


def save_checkpoint(name: str, data_root: str, path: str,
                    perturb_student: bool = False) -> Config:
    """Build a tiny config's model with seeded weights and save it as the
    runner would (``state_dict`` + ``meta.dataset_meta``)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(CONFIGS, f'{name}.py'))
    rewrite_datasets(cfg, data_root=data_root)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    if perturb_student:  # teacher != student
        with torch.no_grad():
            for param in model.student.cls_head.parameters():
                param.add_(torch.randn_like(param))
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(cls_classes=SAVED_CLASSES))), path)
    return cfg


@pytest.fixture(scope='module')
def multitask(data_root, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'multitask.pth')
    cfg = save_checkpoint('tiny_multitask', data_root, path)
    return HermesInferencer(
        cfg, path, device='cpu', show_progress=False)


def _images(data_root):
    return [
        osp.join(data_root, 'benign', 'benign (1).png'),
        osp.join(data_root, 'malignant', 'malignant (2).png'),
        osp.join(data_root, 'normal', 'normal (1).png'),
    ]


def test_results_per_image(multitask, data_root):
    paths = _images(data_root)
    preds = multitask(paths)['predictions']
    assert [p['image'] for p in preds] == [
        'benign/benign (1).png', 'malignant/malignant (2).png',
        'normal/normal (1).png'
    ]
    for path, pred in zip(paths, preds):
        height, width = cv2.imread(path).shape[:2]
        assert pred['mask'].shape == (height, width)
        assert pred['mask'].dtype == np.uint8
        assert set(np.unique(pred['mask'])) <= {0, 1}
        assert pred['lesion_area'] == int(pred['mask'].sum())
        assert pred['scores'].shape == (3, )
        assert pred['scores'].sum() == pytest.approx(1.0, abs=1e-6)
        assert pred['pred_label'] == int(np.argmax(pred['scores']))
        assert pred['pred_class'] == SAVED_CLASSES[pred['pred_label']]
        assert pred['img_path'] == path
    # Synthetic images have different sizes: the masks follow them.
    assert len({p['mask'].shape for p in preds}) > 1


def test_input_forms_agree(multitask, data_root, tmp_path):
    paths = _images(data_root)
    by_path = multitask(paths)['predictions']
    # A BGR array (as cv2 reads it), a grey array, and batching.
    arrays = multitask([cv2.imread(p) for p in paths],
                       batch_size=2)['predictions']
    assert [p['image'] for p in arrays] == ['array_0', 'array_1', 'array_2']
    for a, b in zip(by_path, arrays):
        np.testing.assert_allclose(a['scores'], b['scores'], atol=1e-5)
        assert (a['mask'] != b['mask']).mean() < 1e-3
    grey = cv2.imread(paths[2], cv2.IMREAD_GRAYSCALE)
    (single, ) = multitask(grey)['predictions']
    assert single['mask'].shape == grey.shape
    # A folder (recursive, masks skipped) gives the same results as the
    # list of its images.
    folder = tmp_path / 'folder'
    for path in paths:
        target = folder / osp.relpath(path, data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        mask = path.replace('.png', '_mask.png')
        shutil.copy(mask, str(target).replace('.png', '_mask.png'))
    from_folder = multitask(str(folder))['predictions']
    assert [p['image'] for p in from_folder] == [p['image'] for p in by_path]
    for a, b in zip(by_path, from_folder):
        np.testing.assert_array_equal(a['scores'], b['scores'])
        np.testing.assert_array_equal(a['mask'], b['mask'])


def test_overlays_and_csv(multitask, data_root, tmp_path):
    # The same file name in two folders, plus a file in a third folder.
    src = _images(data_root)[0]
    for sub in ('site_a', 'site_b'):
        (tmp_path / 'in' / sub).mkdir(parents=True)
        shutil.copy(src, tmp_path / 'in' / sub / 'case.png')
    inputs = [str(tmp_path / 'in' / 'site_a'), str(tmp_path / 'in' / 'site_b')]
    out_dir = tmp_path / 'out'
    result = multitask(inputs, out_dir=str(out_dir), return_vis=True)
    preds, overlays = result['predictions'], result['visualization']
    assert [p['image'] for p in preds] == ['site_a/case.png',
                                           'site_b/case.png']
    for pred, overlay in zip(preds, overlays):
        written = cv2.imread(str(out_dir / pred['image']))[..., ::-1]
        np.testing.assert_array_equal(written, overlay)
        image = cv2.imread(src)[..., ::-1]
        np.testing.assert_array_equal(
            overlay,
            multitask.visualizer.draw_overlay(
                image, pred['mask'], overlay_lines(
                    pred['pred_class'],
                    pred['scores'][pred['pred_label']],
                    pred['lesion_area'], image.shape[0] * image.shape[1],
                    multitask.visualizer.class_has_lesion(
                        pred['pred_class']))))
    with open(out_dir / 'predictions.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == csv_header(SAVED_CLASSES) == [
        'image', 'predicted_class', 'prob_cyst', 'prob_carcinoma',
        'prob_healthy', 'lesion_area', 'error'
    ]
    assert [r[0] for r in rows[1:]] == ['site_a/case.png', 'site_b/case.png']
    for row, pred in zip(rows[1:], preds):
        assert row[1] == pred['pred_class']
        np.testing.assert_allclose([float(x) for x in row[2:5]],
                                   pred['scores'], atol=1e-6)
        assert int(row[5]) == pred['lesion_area']
    # Never overwrite an input image.
    with pytest.raises(ValueError, match='overwrite input'):
        multitask(str(tmp_path / 'in' / 'site_a'),
                  out_dir=str(tmp_path / 'in' / 'site_a'))


def test_hermes_predicts_with_predict_on(data_root, tmp_path):
    path = str(tmp_path / 'hermes.pth')
    cfg = save_checkpoint(
        'tiny_hermes', data_root, path, perturb_student=True)
    image = _images(data_root)[1]
    teacher = HermesInferencer(cfg, path, device='cpu', show_progress=False)
    student = INFERENCERS.build(
        dict(
            type='HermesInferencer',
            model=cfg,
            weights=path,
            device='cpu',
            predict_on='student',
            show_progress=False))
    assert teacher.model.predictor is teacher.model.teacher.module
    assert student.model.predictor is student.model.student
    # SyncBN (the tiny config's norm) is reverted on CPU.
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in teacher.model.modules())
    (t, ) = teacher(image)['predictions']
    (s, ) = student(image)['predictions']
    # Same segmentation (only the student's classifier was perturbed).
    np.testing.assert_array_equal(t['mask'], s['mask'])
    assert not np.allclose(t['scores'], s['scores'])
    assert s['scores'].sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match='predict_on'):
        HermesInferencer(cfg, path, device='cpu', predict_on='ema')


def test_collect_inputs(tmp_path):
    for rel in ('a/x (10).png', 'a/x (2).png', 'a/x (2)_mask.png',
                'a/x (2)_mask_1.png', 'a/notes.txt', 'b/x (2).PNG'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b'')
    items = collect_inputs([str(tmp_path / 'a'), str(tmp_path / 'b')])
    assert [i.name for i in items] == [
        'a/x (2).png', 'a/x (10).png', 'b/x (2).PNG'
    ]
    items = collect_inputs(str(tmp_path / 'a'), exclude=None)
    assert [i.name for i in items] == [
        'x (2).png', 'x (2)_mask.png', 'x (2)_mask_1.png', 'x (10).png'
    ]
    assert unique_paths(['a/x.png', 'a/x.jpg', 'b/x.png'], 'o') == [
        osp.join('o', 'a/x.png'),
        osp.join('o', 'a/x_1.png'),
        osp.join('o', 'b/x.png')
    ]
    with pytest.raises(FileNotFoundError):
        collect_inputs(str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match='no image'):
        collect_inputs(str(tmp_path / 'b'), exclude='x')
