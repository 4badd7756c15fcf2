"""Tests for MultiTaskMetric and its pure functions: closed-form values on
hand-made masks / labels, sklearn cross-checks, empty-mask and ignore rules,
and the real SegDataSample -> Evaluator path."""
import math
import pickle

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from scipy import ndimage
from scipy.spatial.distance import cdist
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_score, recall_score, roc_auc_score)

from hermes_mm.evaluation.metrics import functional as F
from hermes_mm.evaluation.metrics import multi_task_metric as mtm
from hermes_mm.evaluation.metrics.multi_task_metric import MultiTaskMetric
from hermes_mm.registry import METRICS

H, W = 12, 16
CLASSES = ('benign', 'malignant', 'normal')
DESIGN_KEYS = ('seg/dice', 'seg/iou', 'seg/hd95', 'cls/accuracy', 'cls/f1',
               'cls/auc')


def square(top, left, size, shape=(H, W)):
    m = np.zeros(shape, dtype=np.int64)
    m[top:top + size, left:left + size] = 1
    return m


def seg_sample(pred, gt, name='img.png'):
    return dict(
        img_path=name,
        ori_shape=gt.shape,
        pred_sem_seg=dict(data=torch.as_tensor(pred)[None]),
        gt_sem_seg=dict(data=torch.as_tensor(gt)[None]))


def cls_sample(gt_label, score, name='img.png'):
    score = torch.as_tensor(score, dtype=torch.float32)
    return dict(
        img_path=name,
        gt_label=torch.tensor([gt_label]),
        pred_score=score,
        pred_label=score.argmax().reshape(1))


def run(metric, samples, meta=None):
    metric.dataset_meta = meta
    metric.process(None, samples)
    return metric.compute_metrics(metric.results)


def metric(**kwargs):
    kwargs.setdefault('log_table', False)
    return MultiTaskMetric(**kwargs)


# --------------------------------------------------------------- overlap
def test_overlap_two_squares_known_area():
    # two 4x4 squares overlapping in a 2x2 block: TP=4, FP=FN=12
    pred, gt = square(2, 2, 4), square(4, 4, 4)
    out = run(metric(), [seg_sample(pred, gt)])
    assert out['seg/dice'] == pytest.approx(100 * 8 / 32)
    assert out['seg/iou'] == pytest.approx(100 * 4 / 28)
    assert out['seg/precision'] == pytest.approx(100 * 4 / 16)
    assert out['seg/recall'] == pytest.approx(100 * 4 / 16)


def test_global_differs_from_per_image():
    one = np.zeros((H, W), dtype=np.int64)
    one[0, 0] = 1
    big = square(3, 3, 3)  # 9 lesion pixels, nothing predicted
    samples = [
        seg_sample(one, one, 'a.png'),
        seg_sample(np.zeros_like(big), big, 'b.png')
    ]
    out = run(metric(), samples)
    assert out['seg/dice'] == pytest.approx(50.)  # mean of 100 and 0
    assert out['seg/iou'] == pytest.approx(50.)
    # global: TP=1, FP=0, FN=9
    assert out['seg/dice_global'] == pytest.approx(100 * 2 / 11)
    assert out['seg/iou_global'] == pytest.approx(100 * 1 / 10)
    assert out['seg/recall'] == pytest.approx(10.)
    assert out['seg/precision'] == pytest.approx(100.)


# ------------------------------------------------------------------ HD95
def test_hd95_single_pixels():
    a, b = np.zeros((H, W), bool), np.zeros((H, W), bool)
    a[2, 3], b[5, 7] = True, True  # 3-4-5 triangle
    assert F.hd95(a, b) == pytest.approx(5.)
    assert F.hd95(a, b, spacing=(2., 1.)) == pytest.approx(math.hypot(6, 4))


@pytest.mark.parametrize('connectivity', [1, 2])
@pytest.mark.parametrize('k', [1, 3])
def test_hd95_shifted_square(k, connectivity):
    a = square(3, 2, 5).astype(bool)
    b = np.roll(a, k, axis=1)
    assert F.hd95(a, b, connectivity=connectivity) == pytest.approx(k)
    assert F.hd95(b, a, connectivity=connectivity) == pytest.approx(k)
    assert F.hd95(a, a) == 0.


def test_boundary_cross_vs_square():
    a = square(0, 0, 3, (5, 5)).astype(bool)
    a[1:4, 1:4] = True  # union of two offset 3x3 squares
    for conn in (1, 2):
        fp = ndimage.generate_binary_structure(2, conn)
        expected = a & ~ndimage.binary_erosion(a, fp, border_value=0)
        np.testing.assert_array_equal(F.boundary(a, conn), expected)
    assert F.boundary(a, 1).sum() < F.boundary(a, 2).sum()
    # documented default: medpy's 3x3 cross
    assert F.BOUNDARY_CONNECTIVITY == 1
    assert MultiTaskMetric(log_table=False).connectivity == 1


def brute_hd95(a, b, spacing, conn):
    sp = np.asarray(spacing, float)
    pa = np.argwhere(F.boundary(a, conn)) * sp
    pb = np.argwhere(F.boundary(b, conn)) * sp
    d = cdist(pa, pb)
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)


@pytest.mark.parametrize('conn', [1, 2])
def test_hd95_matches_brute_force_on_random_blobs(conn):
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = ndimage.binary_opening(rng.random((20, 24)) > 0.6)
        b = ndimage.binary_opening(rng.random((20, 24)) > 0.6)
        assert a.any() and b.any()
        sp = (1.5, 0.5)
        assert F.hd95(a, b, spacing=sp, connectivity=conn) == \
            pytest.approx(brute_hd95(a, b, sp, conn))
    # boundary-to-boundary, not boundary-to-mask: isolated pixels deep
    # inside a large square are far from its boundary
    big = np.zeros((21, 21), bool)
    big[:, :] = True
    dots = np.zeros_like(big)
    dots[6:15:2, 6:15:2] = True
    assert F.hd95(dots, big, connectivity=conn) == \
        pytest.approx(brute_hd95(dots, big, (1., 1.), conn))
    assert F.hd95(dots, big, connectivity=conn) == pytest.approx(8.)


def reference_boundary(mask):
    """Written out independently of ``F.boundary``: mask pixels with a
    4-neighbour outside the mask (outside the image counts as outside)."""
    padded = np.pad(mask, 1)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
             & padded[1:-1, 2:])
    return mask & ~inner


def reference_hd95(pred, gt, mode):
    """medpy (pooled) or MONAI / surface-distance (max of the directed
    95th percentiles), by brute force over boundary pixel pairs."""
    d = cdist(np.argwhere(reference_boundary(pred)),
              np.argwhere(reference_boundary(gt)))
    forward, backward = d.min(1), d.min(0)
    if mode == 'pooled':
        return np.percentile(np.concatenate([forward, backward]), 95)
    return max(np.percentile(forward, 95), np.percentile(backward, 95))


def blob_cases(n=6, size=40, seed=0):
    """Lesion-like pairs; every other prediction has a small false-positive
    blob far from the lesion: its few boundary pixels are more than 5 % of
    the prediction's boundary but less than 5 % of both boundaries pooled,
    which is where the two forms differ most."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.integers(12, 28, 2)
        ry, rx = rng.integers(5, 10, 2)
        gt = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        dy, dry, dx = (rng.integers(-2, 3) for _ in range(3))
        pred = ((yy - cy - dy) / (ry + dry))**2 \
            + ((xx - cx - dx) / rx)**2 <= 1
        if i % 2:  # one 2 x 2 false-positive blob in a corner
            y, x = rng.choice([1, size - 3], 2)
            pred[y:y + 2, x:x + 2] = True
        yield pred, gt


@pytest.mark.parametrize('mode', ['pooled', 'max_directed'])
def test_hd95_modes_match_reference(mode):
    differs = 0
    for pred, gt in blob_cases():
        want = reference_hd95(pred, gt, mode)
        assert F.hd95(pred, gt, mode=mode) == pytest.approx(want)
        pooled, directed = (F.hd95(pred, gt, mode=m)
                            for m in ('pooled', 'max_directed'))
        assert directed >= pooled - 1e-9
        differs += directed > pooled + 1
    assert differs >= 2  # the false-positive blobs separate the two forms
    # empty-mask rules are shared
    empty = np.zeros((H, W), bool)
    assert F.hd95(empty, empty, mode=mode) == 0.
    assert F.hd95(empty, square(2, 2, 3) > 0, mode=mode) == \
        pytest.approx(math.hypot(H, W))


def test_hd95_mode_through_the_metric():
    samples = [seg_sample(pred.astype(np.int64), gt.astype(np.int64), str(i))
               for i, (pred, gt) in enumerate(blob_cases())]
    out = {mode: run(metric(hd95_mode=mode), samples)['seg/hd95']
           for mode in ('pooled', 'max_directed')}
    for mode, value in out.items():
        want = np.mean([reference_hd95(p, g, mode)
                        for p, g in blob_cases()])
        assert value == pytest.approx(want)
    assert out['max_directed'] > out['pooled']
    assert MultiTaskMetric().hd95_mode == 'pooled'  # what the README reports
    with pytest.raises(ValueError, match="'monai'"):
        MultiTaskMetric(hd95_mode='monai')
    with pytest.raises(ValueError, match='mode must be one of'):
        F.hd95(empty_mask(), empty_mask(), mode='mean')


def empty_mask():
    return np.zeros((H, W), bool)


def test_hd95_modes_match_medpy_and_monai():
    """Cross-check against the libraries themselves, where installed (they
    are not requirements: ``pip install medpy monai``)."""
    medpy = pytest.importorskip('medpy.metric.binary')
    monai = pytest.importorskip('monai.metrics')
    for pred, gt in blob_cases():
        assert F.hd95(pred, gt) == pytest.approx(medpy.hd95(pred, gt))
        ref = monai.compute_hausdorff_distance(
            torch.as_tensor(pred)[None, None].float(),
            torch.as_tensor(gt)[None, None].float(), percentile=95)
        assert F.hd95(pred, gt, mode='max_directed') == pytest.approx(
            float(ref))


def test_empty_rules():
    empty = np.zeros((H, W), dtype=np.int64)
    les = square(1, 1, 3)
    diag = math.sqrt(H**2 + W**2)
    assert F.hd95(empty > 0, empty > 0) == 0.
    assert F.hd95(empty > 0, les > 0) == pytest.approx(diag)
    assert F.hd95(les > 0, empty > 0) == pytest.approx(diag)
    assert F.hd95(empty > 0, les > 0, spacing=(2., 1.)) == \
        pytest.approx(math.hypot(2 * H, W))
    assert F.hd95(empty > 0, les > 0, one_empty=0.) == 0.  # SSL4MIS-like
    assert F.overlap_scores(0, 0, 0) == (1., 1.)
    assert F.overlap_scores(0, 5, 0) == (0., 0.)
    assert F.overlap_scores(0, 0, 5) == (0., 0.)

    samples = [
        seg_sample(empty, empty, 'both_empty.png'),
        seg_sample(empty, les, 'pred_empty.png'),
    ]
    out = run(metric(), samples)
    assert out['seg/dice'] == pytest.approx(50.)
    assert out['seg/iou'] == pytest.approx(50.)
    assert out['seg/hd95'] == pytest.approx(diag / 2)
    assert out['seg/hd95_lesion'] == pytest.approx(diag)  # only 2nd has GT
    out = run(metric(empty_overlap=0.), samples[:1])
    assert out['seg/dice'] == 0.
    assert math.isnan(out['seg/hd95_lesion'])  # no lesion image at all
    assert math.isnan(out['seg/dice_lesion'])
    assert out['seg/false_lesion_rate'] == 0.


def test_lesion_and_lesion_free_images_split():
    """``seg/dice`` = lesion-image Dice and false lesions on lesion-free
    images, each reported on its own."""
    empty = np.zeros((H, W), dtype=np.int64)
    les = square(1, 1, 4)  # 16 px
    half = square(1, 1, 4)
    half[1:3] = 0  # 8 of the 16 px: Dice 2*8/(8+16)
    samples = [
        seg_sample(les, les, 'perfect.png'),
        seg_sample(half, les, 'half.png'),
        seg_sample(empty, empty, 'normal_ok.png'),
        seg_sample(square(6, 6, 2), empty, 'normal_false.png'),
        seg_sample(square(6, 6, 2), empty, 'normal_false2.png'),
    ]
    out = run(metric(), samples)
    assert out['seg/dice_lesion'] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out['seg/iou_lesion'] == pytest.approx(100 * (1 + 1 / 2) / 2)
    assert out['seg/false_lesion_rate'] == pytest.approx(100 * 2 / 3)
    # the mean over all images is recovered from the two parts
    assert out['seg/dice'] == pytest.approx(
        (2 * out['seg/dice_lesion'] +
         3 * (100 - out['seg/false_lesion_rate'])) / 5)
    only_lesions = run(metric(), samples[:2])
    assert math.isnan(only_lesions['seg/false_lesion_rate'])
    assert only_lesions['seg/dice_lesion'] == pytest.approx(
        only_lesions['seg/dice'])


def test_ignore_index_respected():
    gt = square(2, 2, 4)
    gt[8:, 10:] = 255  # ignore region
    pred = square(2, 2, 4)
    pred[8:, 10:] = 1  # lesion predicted only where GT is ignored
    out = run(metric(), [seg_sample(pred, gt)])
    assert out['seg/dice'] == pytest.approx(100.)
    assert out['seg/precision'] == pytest.approx(100.)
    assert out['seg/hd95'] == 0.
    # the same prediction without ignore would be penalised
    gt_no_ignore = np.where(gt == 255, 0, gt)
    out = run(metric(), [seg_sample(pred, gt_no_ignore)])
    assert out['seg/dice'] < 100. and out['seg/hd95'] > 0.
    # a custom ignore value works the same way
    gt7 = np.where(gt == 255, 7, gt)
    out = run(metric(ignore_index=7), [seg_sample(pred, gt7)])
    assert out['seg/dice'] == pytest.approx(100.)


# -------------------------------------------------------- classification
def random_cls(n, k, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_cls_metrics_vs_sklearn():
    y, p = random_cls(60, 3, seed=0)
    samples = [cls_sample(int(t), s, f'{i}.png')
               for i, (t, s) in enumerate(zip(y, p))]
    out = run(metric(), samples, meta=dict(cls_classes=CLASSES))
    yp = p.argmax(1)
    assert out['cls/accuracy'] == pytest.approx(100 * accuracy_score(y, yp))
    assert out['cls/f1'] == pytest.approx(
        100 * f1_score(y, yp, average='macro'))
    assert out['cls/precision'] == pytest.approx(
        100 * precision_score(y, yp, average='macro'))
    assert out['cls/recall'] == pytest.approx(
        100 * recall_score(y, yp, average='macro'))
    assert out['cls/auc'] == pytest.approx(
        100 * roc_auc_score(y, p, multi_class='ovr', average='macro'))
    assert out['cls/confusion_matrix'] == confusion_matrix(y, yp).tolist()
    sens = recall_score(y, yp, average=None)
    for i, name in enumerate(CLASSES):
        neg = y != i
        spec = np.mean(yp[neg] != i)
        assert out[f'cls/sensitivity_{name}'] == pytest.approx(100 * sens[i])
        assert out[f'cls/specificity_{name}'] == pytest.approx(100 * spec)
    assert not any(k.startswith('seg/') for k in out)  # no seg data given


def test_sensitivity_specificity_hand_case():
    cm = np.array([[3, 1], [2, 4]])  # rows gt, cols pred
    sens, spec = F.sensitivity_specificity(cm)
    np.testing.assert_allclose(sens, [3 / 4, 4 / 6])
    np.testing.assert_allclose(spec, [4 / 6, 3 / 4])


def test_auc_perfect_and_hand_case_binary():
    # perfectly separated, 3 classes
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.eye(3)[y] * 0.8 + 0.2 / 3
    out = run(metric(), [cls_sample(int(t), s) for t, s in zip(y, p)])
    assert out['cls/auc'] == pytest.approx(100.)
    # binary hand case: positives 0.35, 0.8 vs negatives 0.1, 0.4 -> 3/4
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    scores = np.stack([1 - p1, p1], 1)
    np.testing.assert_allclose(F.one_vs_rest_auc(y, scores), [0.75, 0.75])
    out = run(metric(), [cls_sample(int(t), s) for t, s in zip(y, scores)],
              meta=dict(cls_classes=('benign', 'malignant')))
    assert out['cls/auc'] == pytest.approx(75.)
    assert out['cls/accuracy'] == pytest.approx(75.)  # 0.4 -> wrong
    assert out['cls/sensitivity_malignant'] == pytest.approx(50.)
    assert out['cls/specificity_malignant'] == pytest.approx(100.)
    assert out['cls/confusion_matrix'] == [[2, 0], [1, 1]]


def test_binary_auc_equals_sklearn_on_saturated_softmax():
    """Float32 softmax of a margin above ~16.6 rounds p0 to 1.0 for every
    image (ties), while p1 still ranks them (issue example)."""
    logits = torch.tensor([[0., -21.], [0., -19.], [0., -20.], [0., -18.]])
    y = np.array([0, 1, 0, 1])
    scores = logits.softmax(dim=1)  # float32, as the model writes them
    assert (scores[:, 0] == 1).all()  # saturated
    want = 100 * roc_auc_score(y, scores[:, 1].numpy())
    assert want == 100.
    out = run(metric(), [cls_sample(int(t), s) for t, s in zip(y, scores)])
    assert out['cls/auc'] == want
    np.testing.assert_allclose(F.one_vs_rest_auc(y, scores.numpy()),
                               [1., 1.])
    # saturated the other way (p1 -> 1.0): the logit margin still ranks
    flipped = (-logits).softmax(dim=1)
    assert (flipped[:, 1] == 1).all()
    y = 1 - y  # margins z1 - z0 = 21, 19, 20, 18: class 0 ranks lowest
    assert roc_auc_score(y, flipped[:, 1].numpy()) == 0.5  # p1 ties
    out = run(metric(), [cls_sample(int(t), s) for t, s in zip(y, flipped)])
    assert out['cls/auc'] == 100 * roc_auc_score(y, -logits[:, 1]) == 100.


def test_multiclass_auc_ranks_by_exact_log_softmax():
    """Per class, the AUC equals sklearn's on the float64 log-softmax of the
    logits, also where float32 softmax has saturated."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 3)) * 12
    y = rng.integers(0, 3, 30)
    y[:3] = [0, 1, 2]
    scores = torch.as_tensor(logits, dtype=torch.float32).softmax(1)
    assert (scores == 1).sum() >= 2  # some rows saturated
    t = torch.as_tensor(logits, dtype=torch.float64)
    log_p = t.log_softmax(1)
    for k in range(3):
        rest = torch.cat([log_p[:, :k], log_p[:, k + 1:]], 1).logsumexp(1)
        want = roc_auc_score(y == k, (log_p[:, k] - rest).numpy())
        got = F.one_vs_rest_auc(y, scores.numpy())[k]
        assert got == pytest.approx(want), k


def test_macro_conventions_absent_class():
    """Macro P/R/F1 count a class absent from ground truth and predictions
    as 0; macro AUC skips a class without positives."""
    y = np.array([0, 1, 0, 1])
    p = np.array([[.8, .1, .1], [.2, .7, .1], [.6, .3, .1], [.3, .6, .1]])
    out = run(metric(num_classes=3),
              [cls_sample(int(t), s) for t, s in zip(y, p)])
    assert out['cls/precision'] == pytest.approx(100 * 2 / 3)
    assert out['cls/f1'] == pytest.approx(100 * 2 / 3)
    assert out['cls/auc'] == pytest.approx(100.)  # mean of classes 0 and 1


@pytest.fixture
def logs(monkeypatch):
    messages = []
    monkeypatch.setattr(mtm, 'print_log',
                        lambda msg, *a, **k: messages.append(str(msg)))
    return messages


def test_auc_missing_class_warns_and_averages_defined(logs):
    y = np.array([0, 0, 1, 1])
    p = np.array([[.7, .2, .1], [.2, .5, .3], [.4, .5, .1], [.1, .8, .1]])
    out = run(metric(), [cls_sample(int(t), s) for t, s in zip(y, p)],
              meta=dict(cls_classes=CLASSES))
    per = F.one_vs_rest_auc(y, p)
    assert math.isnan(per[2])
    assert out['cls/auc'] == pytest.approx(100 * np.mean(per[:2]))
    assert any('AUC undefined' in m and 'normal' in m for m in logs)


def test_auc_none_defined_is_nan(logs):
    p = np.array([[.7, .3], [.6, .4]])
    out = run(metric(), [cls_sample(0, s) for s in p])
    assert math.isnan(out['cls/auc'])
    assert any('cls/auc is NaN' in m and 'class0' in m and 'class1' in m
               for m in logs)


def test_unknown_gt_label_names_image():
    with pytest.raises(ValueError, match='unknown_case.png'):
        metric().process(None, [cls_sample(-1, [.5, .5], 'unknown_case.png')])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match='diag'):
        MultiTaskMetric(hd95_one_empty='max')
    with pytest.raises(ValueError, match='cls_classes'):
        MultiTaskMetric(num_classes=2, cls_classes=CLASSES)
    with pytest.raises(ValueError, match='connectivity'):
        MultiTaskMetric(connectivity=3)


# ------------------------------------------------------------ end to end
def mixed_samples(seed=0, n=8):
    rng = np.random.default_rng(seed)
    y, p = random_cls(n, 3, seed)
    out = []
    for i in range(n):
        gt = square(int(rng.integers(0, 5)), int(rng.integers(0, 8)), 4)
        if y[i] == 2:  # "normal": no lesion
            gt[:] = 0
        pred = np.roll(gt, int(rng.integers(-1, 2)), axis=1)
        s = seg_sample(pred, gt, f'{i}.png')
        s.update(cls_sample(int(y[i]), p[i], f'{i}.png'))
        out.append(s)
    return out


def test_evaluate_through_base_metric_returns_design_keys():
    m = METRICS.build(dict(type='MultiTaskMetric', prefix='test'))
    m.dataset_meta = dict(
        classes=('background', 'lesion'), cls_classes=CLASSES)
    samples = mixed_samples()
    m.process(None, samples[:5])
    m.process(None, samples[5:])
    # records stay small (no masks) and picklable for DDP collection
    assert pickle.loads(pickle.dumps(m.results)) is not None
    for r in m.results:
        assert r['cls']['score'].size == len(CLASSES)
        assert all(np.ndim(v) == 0 for v in r['seg'].values())
    out = m.evaluate(len(samples))
    assert m.results == []
    for key in DESIGN_KEYS + ('seg/dice_global', 'seg/iou_global',
                              'seg/hd95_lesion', 'seg/dice_lesion',
                              'seg/iou_lesion', 'seg/false_lesion_rate',
                              'seg/precision',
                              'seg/recall', 'cls/precision', 'cls/recall'):
        value = out[f'test/{key}']
        assert math.isfinite(value), key
        if key.startswith('cls/') or key.split('/')[1] in (
                'dice', 'iou', 'dice_global', 'iou_global', 'precision',
                'recall', 'dice_lesion', 'iou_lesion', 'false_lesion_rate'):
            assert 0. <= value <= 100., key
        else:
            assert 0. <= value <= math.hypot(H, W), key
    for name in CLASSES:
        assert 0 <= out[f'test/cls/sensitivity_{name}'] <= 100
        assert 0 <= out[f'test/cls/specificity_{name}'] <= 100
    cm = out['test/cls/confusion_matrix']
    assert np.array(cm).shape == (3, 3) and np.sum(cm) == len(samples)


def test_segdatasample_through_evaluator():
    """Samples built like MultiTaskSegmentor.predict, converted by
    MMEngine's Evaluator with to_dict()."""
    gt, pred = square(2, 2, 4), square(2, 4, 4)  # overlap 4x2
    samples = []
    for i, (label, seg_pred) in enumerate([(0, pred), (1, gt)]):
        ds = SegDataSample(metainfo=dict(
            img_path=f'/data/benign ({i}).png', img_rel=f'benign ({i}).png',
            ori_shape=(H, W), img_shape=(H, W), pad_shape=(H, W),
            scale_factor=(1., 1.), flip=False, flip_direction=None,
            reduce_zero_label=False))
        ds.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
        ds.set_field(torch.tensor([label]), 'gt_label')
        logits = torch.zeros(2, H, W)
        logits[1] = torch.as_tensor(seg_pred, dtype=torch.float32)
        ds.seg_logits = PixelData(data=logits)
        ds.pred_sem_seg = PixelData(data=logits.argmax(0, keepdim=True))
        score = torch.tensor([0.9, 0.1] if label == 0 else [0.2, 0.8])
        ds.set_field(score, 'pred_score')
        ds.set_field(score.argmax().reshape(1), 'pred_label')
        samples.append(ds)
    ev = Evaluator(MultiTaskMetric(log_table=False))
    ev.dataset_meta = dict(cls_classes=('benign', 'malignant'))
    ev.process(data_samples=samples, data_batch=None)
    out = ev.evaluate(len(samples))
    dice0 = 2 * 8 / (16 + 16)
    assert out['seg/dice'] == pytest.approx(100 * (dice0 + 1) / 2)
    assert out['seg/hd95'] == pytest.approx(2. / 2)  # shift 2 px, then 0
    assert out['cls/accuracy'] == pytest.approx(100.)
    assert out['cls/auc'] == pytest.approx(100.)
    assert 'cls/sensitivity_malignant' in out


def test_missing_tasks_are_skipped():
    s = seg_sample(square(1, 1, 3), square(1, 1, 3))  # no classifier
    s['gt_label'] = torch.tensor([0])
    out = run(metric(), [s])
    assert out['seg/dice'] == pytest.approx(100.)
    assert not any(k.startswith('cls/') for k in out)
    # labels without scores: accuracy but no AUC
    out = run(metric(), [dict(img_path='x', gt_label=torch.tensor([1]),
                              pred_label=torch.tensor([1]))],
              meta=dict(cls_classes=('a', 'b')))
    assert out['cls/accuracy'] == 100. and 'cls/auc' not in out


def test_table_is_logged(logs):
    run(MultiTaskMetric(), mixed_samples())
    assert any('seg/dice' in m and 'cls/auc' in m for m in logs)
