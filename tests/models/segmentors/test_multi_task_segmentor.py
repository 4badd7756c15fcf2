"""Tests of MultiTaskSegmentor: registry builds with MMSeg and MMPretrain
parts and both task necks, flat prefixed losses with gradients, predictions
at the original size, tensor/slide modes, closed-form CAMs, and a run inside
MMSeg's own test loop (Runner + IoUMetric)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
from hermes_mm.models.segmentors.multi_task_segmentor import (
    MultiTaskSegmentor, rename_loss_keys)
from hermes_mm.registry import MODELS

CHANNELS = [64, 128, 256, 512]  # ResNet-18 stages
NUM_CLS = 3
S = 32  # network input size (tiny: this suite runs on 2 CPU cores)


def _cfg(arch: str, neck: str, **kwargs) -> dict:
    if arch == 'v1c_fcn':
        backbone = dict(type='ResNetV1c', depth=18, out_indices=(0, 1, 2, 3))
        decode_head = dict(
            type='FCNHead', in_channels=CHANNELS[-1], in_index=3,
            channels=16, num_convs=1, concat_input=False, num_classes=2,
            dropout_ratio=0.0,
            loss_decode=[
                dict(type='CrossEntropyLoss', loss_weight=1.0),
                dict(type='DiceLoss', use_sigmoid=False, loss_weight=1.0),
            ])
    else:
        backbone = dict(type='mmpretrain.ResNet', depth=18,
                        out_indices=(0, 1, 2, 3))
        decode_head = dict(
            type='UPerHead', in_channels=CHANNELS, in_index=[0, 1, 2, 3],
            pool_scales=(1, 2), channels=16, num_classes=2,
            dropout_ratio=0.0,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0))
    # FCNHead reads only the deepest level: gate only that one, or the
    # other gates get no gradient (and DDP would fail on unused parameters)
    gate_indices = (-1, ) if arch == 'v1c_fcn' else None
    task_neck = (dict(type='TaskSplitNeck') if neck == 'split' else dict(
        type='ITASNeck', in_channels=CHANNELS, saliency_channels=8,
        gate_indices=gate_indices))
    cfg = dict(
        type='MultiTaskSegmentor',
        backbone=backbone,
        decode_head=decode_head,
        task_neck=task_neck,
        cls_head=dict(type='mmpretrain.LinearClsHead', num_classes=NUM_CLS,
                      in_channels=CHANNELS[-1],
                      loss=dict(type='CrossEntropyLoss')),
        data_preprocessor=dict(type='SegDataPreProcessor',
                               mean=[128.] * 3, std=[64.] * 3),
        test_cfg=dict(mode='whole'))
    cfg.update(kwargs)
    return cfg


def _build(arch='v1c_fcn', neck='itas', **kwargs) -> MultiTaskSegmentor:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(_cfg(arch, neck, **kwargs))


def _samples(n, ori_shape=(S, S), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        s = SegDataSample(metainfo=dict(
            img_shape=(S, S), pad_shape=(S, S), ori_shape=ori_shape))
        mask = torch.zeros(1, S, S, dtype=torch.long)
        mask[:, 4 + 2 * i:20, 8:24 - 2 * i] = 1
        mask[:, :, :2] = 255  # some ignored pixels
        s.gt_sem_seg = PixelData(data=mask)
        s.gt_label = torch.tensor([i % NUM_CLS])
        out.append(s)
    return out, torch.randn(n, 3, S, S, generator=g)


ARCHS = [('v1c_fcn', 'split'), ('v1c_fcn', 'itas'),
         ('pretrain_uper', 'split'), ('pretrain_uper', 'itas')]


@pytest.fixture(scope='module')
def models():
    """One model per (architecture, task neck), built once."""
    return {key: _build(*key) for key in ARCHS}


@pytest.mark.parametrize('key', ARCHS, ids=['-'.join(k) for k in ARCHS])
def test_loss_keys_finite_with_gradients(models, key):
    model = models[key]
    model.train()
    model.zero_grad()
    samples, x = _samples(2)
    losses = model.loss(x, samples)
    loss_keys = {k for k in losses if 'loss' in k}
    expected = {'seg.loss_ce', 'cls.loss_cls'}
    if key[0] == 'v1c_fcn':
        expected.add('seg.loss_dice')
    if key[1] == 'itas':
        expected.add('sal.loss_sal')
    assert loss_keys == expected
    assert all(k.split('.')[0] in ('seg', 'cls', 'sal') for k in losses)
    assert 'loss' not in losses  # MMPretrain's key is renamed
    for k in loss_keys:
        assert losses[k].dim() == 0 and torch.isfinite(losses[k]), k
        assert losses[k].requires_grad, k
    sum(losses[k] for k in loss_keys).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert missing == []


def test_cls_loss_is_the_head_loss_on_image_labels(models, monkeypatch):
    model = models[('pretrain_uper', 'split')].train()
    seen = []
    classify = model.classify
    monkeypatch.setattr(model, 'classify',
                        lambda feats: seen.append(classify(feats)) or seen[-1])
    samples, x = _samples(2)
    with torch.no_grad():
        losses = model.loss(x, samples)
    assert len(seen) == 1
    expected = F.cross_entropy(seen[0], torch.tensor([0, 1]))
    assert torch.allclose(losses['cls.loss_cls'], expected, atol=1e-6)


def test_rename_loss_keys():
    assert rename_loss_keys({'loss': 1, 'acc': 2}, {'loss': 'loss_cls'}) == \
        {'loss_cls': 1, 'acc': 2}


def test_cls_loss_name_must_start_with_loss():
    with pytest.raises(ValueError, match="'cls_ce'"):
        _build('v1c_fcn', 'split', cls_loss_name='cls_ce')


def test_test_cfg_none_falls_back_to_whole():
    model = _build('v1c_fcn', 'split', test_cfg=None)
    assert model.test_cfg['mode'] == 'whole'


@pytest.mark.parametrize('key', [('v1c_fcn', 'itas'),
                                 ('pretrain_uper', 'split')],
                         ids=['v1c_fcn-itas', 'pretrain_uper-split'])
def test_predict_at_original_size(models, key):
    model = models[key].eval()
    ori = (40, 26)  # different from the network input (32, 32)
    samples, x = _samples(2, ori_shape=ori)
    with torch.no_grad():
        preds = model.predict(x, copy.deepcopy(samples))
        out = model(x, mode='tensor')
    # tensor mode: (seg logits at the head's resolution, class logits)
    assert isinstance(out, tuple) and len(out) == 2
    raw_seg, raw_cls = out
    head_stride = 32 if key[0] == 'v1c_fcn' else 4
    assert raw_seg.shape == (2, 2, S // head_stride, S // head_stride)
    assert raw_cls.shape == (2, NUM_CLS)
    for i, pred in enumerate(preds):
        assert pred.seg_logits.data.shape == (2, *ori)
        assert pred.pred_sem_seg.data.shape == (1, *ori)
        assert torch.equal(pred.pred_sem_seg.data[0],
                           pred.seg_logits.data.argmax(dim=0))
        # MMSeg: head logits -> img_shape -> ori_shape (bilinear)
        expected = F.interpolate(
            F.interpolate(raw_seg[i:i + 1], size=(S, S), mode='bilinear',
                          align_corners=False),
            size=ori, mode='bilinear', align_corners=False)[0]
        assert torch.allclose(pred.seg_logits.data, expected, atol=1e-5)
        assert pred.pred_score.shape == (NUM_CLS, )
        assert float(pred.pred_score.sum()) == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(pred.pred_score, raw_cls[i].softmax(0),
                              atol=1e-6)
        assert pred.pred_label.shape == (1, )
        assert int(pred.pred_label) == int(pred.pred_score.argmax())
        # ground truth is kept for the metric
        assert torch.equal(pred.gt_sem_seg.data, samples[i].gt_sem_seg.data)


def test_min_lesion_area_filters_the_predicted_mask(models, monkeypatch):
    """Logits with a 16x16 lesion and a 2x2 speck: at 1 % of the image
    (10.24 px) only the speck goes; logits and class scores are kept."""
    model = models[('pretrain_uper', 'split')].eval()
    samples, x = _samples(2)
    seg = torch.zeros(2, 2, S, S)
    seg[:, 1, 4:20, 4:20] = 5.0
    seg[:, 1, 28:30, 28:30] = 5.0
    cls = torch.randn(2, NUM_CLS)
    monkeypatch.setattr(model, 'inference_both', lambda *args: (seg, cls))
    plain = model.predict(x, copy.deepcopy(samples))
    monkeypatch.setitem(model.test_cfg, 'min_lesion_area', 0.01)
    filtered = model.predict(x, copy.deepcopy(samples))
    expected = torch.zeros(1, S, S, dtype=torch.long)
    expected[0, 4:20, 4:20] = 1
    for a, b in zip(plain, filtered):
        assert int(a.pred_sem_seg.data.sum()) == 16 * 16 + 4
        assert torch.equal(b.pred_sem_seg.data, expected)
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert torch.equal(a.pred_score, b.pred_score)
    with pytest.raises(ValueError, match='test_cfg.min_lesion_area'):
        _build('v1c_fcn', 'split',
               test_cfg=dict(mode='whole', min_lesion_area=5))


def test_lesion_classes_let_the_mask_decide(models, monkeypatch):
    """Image 0: a 16x16 lesion, classifier says class 2 (lesion-free) ->
    the best lesion class; image 1: only a 2x2 speck, removed by
    min_lesion_area, classifier says class 1 -> class 2. Scores and masks
    are the same as without the option."""
    model = models[('pretrain_uper', 'split')].eval()
    samples, x = _samples(2)
    seg = torch.zeros(2, 2, S, S)
    seg[0, 1, 4:20, 4:20] = 5.0
    seg[1, 1, 28:30, 28:30] = 5.0
    cls = torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, 1.0]])
    monkeypatch.setattr(model, 'inference_both', lambda *args: (seg, cls))
    monkeypatch.setitem(model.test_cfg, 'min_lesion_area', 0.01)
    plain = model.predict(x, copy.deepcopy(samples))
    assert [int(p.pred_label) for p in plain] == [2, 1]
    monkeypatch.setitem(model.test_cfg, 'lesion_classes', [0, 1])
    joint = model.predict(x, copy.deepcopy(samples))
    assert [int(p.pred_label) for p in joint] == [0, 2]
    for a, b in zip(plain, joint):
        assert b.pred_label.shape == (1, )
        assert torch.equal(a.pred_score, b.pred_score)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
    with pytest.raises(ValueError, match='every one of the 3'):
        _build('v1c_fcn', 'split',
               test_cfg=dict(mode='whole', lesion_classes=[0, 1, 2]))


def test_predict_without_samples(models):
    model = models[('v1c_fcn', 'split')].eval()
    _, x = _samples(1)
    with torch.no_grad():
        preds = model.predict(x)
    assert len(preds) == 1
    assert preds[0].pred_sem_seg.data.shape == (1, S, S)
    assert preds[0].pred_score.shape == (NUM_CLS, )


def test_slide_mode_matches_whole_for_classification(models):
    whole_model = models[('pretrain_uper', 'itas')].eval()
    # a plain-dict test_cfg (model built from Python, not from a Config)
    # two overlapping windows of 24 x 32
    model = _build('pretrain_uper', 'itas', test_cfg=dict(
        mode='slide', crop_size=(24, S), stride=(8, S)))
    model.load_state_dict(whole_model.state_dict())
    model.eval()
    ori = (48, 40)
    samples, x = _samples(2, ori_shape=ori)
    with torch.no_grad():
        whole = whole_model.predict(x, copy.deepcopy(samples))
        slide = model.predict(x, copy.deepcopy(samples))
        # one window covering the image: identical segmentation too
        model.test_cfg.update(crop_size=(S, S), stride=(S, S))
        one_window = model.predict(x, copy.deepcopy(samples))
    for w, o, s in zip(whole, one_window, slide):
        assert torch.allclose(s.pred_score, w.pred_score, atol=1e-6)
        assert torch.equal(s.pred_label, w.pred_label)
        assert s.seg_logits.data.shape == (2, *ori)
        assert s.pred_sem_seg.data.shape == (1, *ori)
        assert torch.allclose(o.seg_logits.data, w.seg_logits.data,
                              atol=1e-5)
    # several windows see less context: not the whole-image result
    assert not torch.allclose(slide[0].seg_logits.data,
                              whole[0].seg_logits.data, atol=1e-4)


def test_cam_mean_is_the_logits_for_task_split_neck(models):
    model = models[('v1c_fcn', 'split')].eval()
    # a 3 x 2 cls map
    x = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feats = model.extract_task_feats(x)
        cams = model.class_activation_maps(feats)
        logits = model.classify(feats)
    h, w = feats.cls_map.shape[2:]
    assert cams.shape == (2, NUM_CLS, h, w)
    assert torch.allclose(cams.mean((2, 3)), logits, atol=1e-5)
    # and it is a real map, not a constant
    assert float(cams.std()) > 0


def test_cam_pooled_like_itas_reproduces_logits(models):
    model = models[('pretrain_uper', 'itas')].eval()
    neck = model.task_neck
    # a 3 x 2 cls map
    x = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats = model.extract_task_feats(x)
        cams = model.class_activation_maps(feats)
        logits = model.classify(feats)
    attn = feats.cls_attn
    weighted = (cams * attn).sum((2, 3)) / (attn.sum((2, 3)) + neck.eps)
    pooled = neck.pool_mix * weighted + (1 - neck.pool_mix) * cams.mean(
        (2, 3))
    assert torch.allclose(pooled, logits, atol=1e-5)
    # plain averaging is not enough here: the saliency weights matter
    assert not torch.allclose(cams.mean((2, 3)), logits, atol=1e-5)


def test_cam_needs_a_linear_fc():
    head = dict(type='mmpretrain.StackedLinearClsHead', num_classes=NUM_CLS,
                in_channels=CHANNELS[-1], mid_channels=[8])
    model = _build('v1c_fcn', 'split', cls_head=head).eval()
    _, x = _samples(1)
    with torch.no_grad():
        feats = model.extract_task_feats(x)
        assert model.classify(feats).shape == (1, NUM_CLS)  # still works
        with pytest.raises(TypeError, match='StackedLinearClsHead'):
            model.class_activation_maps(feats)


def test_runs_in_mmseg_test_loop_with_iou_metric(tmp_path):
    """MMSeg's own TestLoop + IoUMetric on synthetic BUSI files; the
    metric equals IoU computed by hand from the model's predictions."""
    from mmengine.runner import Runner

    from hermes_mm.datasets.synthetic import generate_synthetic_busi

    init_default_scope('mmseg')
    root = str(tmp_path / 'busi')
    generate_synthetic_busi(root, num=8, seed=0, size_range=(64, 64))
    net = 32  # network input; metrics are at the original 64 x 64
    dataset = dict(
        type='BUSIDataset', data_root=root, test_mode=True,
        pipeline=[
            dict(type='LoadImageAsStored'),
            dict(type='Resize', scale=(net, net), keep_ratio=False),
            dict(type='LoadMultiTaskAnnotations'),
            dict(type='PackMultiTaskInputs'),
        ])
    model_cfg = _cfg('v1c_fcn', 'itas')
    model_cfg['data_preprocessor'] = dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
        seg_pad_val=255)
    torch.manual_seed(0)
    runner = Runner(
        model=model_cfg,
        work_dir=str(tmp_path / 'work'),
        test_dataloader=dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dataset),
        test_cfg=dict(type='TestLoop'),
        test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice']),
        default_scope='mmseg',
        log_level='WARNING')
    # record what the loop's predict() returns, to recompute the metric
    recorded = []
    predict = runner.model.predict

    def recording_predict(*args, **kwargs):
        recorded.extend(predict(*args, **kwargs))
        return recorded[-len(args[0]):]

    runner.model.predict = recording_predict
    metrics = runner.test()
    assert {'aAcc', 'mIoU', 'mDice'} <= set(metrics)

    inter, union, count = np.zeros(2), np.zeros(2), 0
    for preds in [recorded]:
        for pred in preds:
            count += 1
            assert pred.metainfo['img_shape'] == (net, net)
            gt = pred.gt_sem_seg.data[0]
            assert gt.shape == (64, 64)  # original size
            seg = pred.pred_sem_seg.data[0]
            assert seg.shape == gt.shape
            assert pred.pred_score.shape == (NUM_CLS, )
            for c in range(2):
                inter[c] += int(((seg == c) & (gt == c)).sum())
                union[c] += int(((seg == c) | (gt == c)).sum())
    assert count == 8
    assert metrics['mIoU'] == pytest.approx(
        np.round(np.mean(inter / union) * 100, 2), abs=0.011)
