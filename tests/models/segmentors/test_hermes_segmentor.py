"""Tests of HermesSegmentor: EMA teacher (closed form, frozen, eval mode),
the iteration contract, ramped loss weights, DDP-safe losses when nothing is
reliable or nothing is lesion, pseudo-label selection wiring (zones,
padding, CutMix), ablation key sets, predict_on, the pseudo-labeller's
diagnostics and threshold updates. The model is the small config shrunk to
64 x 64 inputs."""
import contextlib
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
from hermes_mm.models.segmentors.hermes_segmentor import HermesSegmentor
from hermes_mm.registry import MODELS

CFG = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs', '_base_',
               'models', 'hermes_r18_small_itas.py')
ADAPTIVE_VARIANT = osp.join(osp.dirname(__file__), '..', '..', '..',
                            'configs', 'demo', 'variants',
                            'hermes_synthetic_adaptive_threshold.py')
S = 64  # network input size
B_L, B_U = 2, 2
LATE = 10**6  # an iteration after every ramp-up: weights = their values
IGNORE = 255
# config: unsup 1.0, contrast 0.1, consistency 0.1, sigmoid from 100 over 200
RAMPS = dict(unsup=1.0, con=0.1, ict=0.1)
RAMP_START, RAMP_LEN = 100, 200


def _model_cfg(**overrides):
    cfg = Config.fromfile(CFG).model
    cfg.data_preprocessor.data_preprocessor.size = (S, S)
    cfg.update(overrides)
    return cfg


def _build(**overrides) -> HermesSegmentor:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(_model_cfg(**overrides))


@pytest.fixture(scope='module')
def model():
    return _build()


@pytest.fixture(scope='module')
def adaptive_model():
    """The model with the pixel policy of the plain adaptive variant
    config. The shipped ``ClassBalancedDualThreshold`` balances against the
    labelled masks, which the hand cases of the pseudo-labeller alone below
    do not pass."""
    cfg = _model_cfg()
    # assigned, not merged: no balancing argument is left behind
    cfg.pseudo_labeler.seg_threshold = Config.fromfile(
        ADAPTIVE_VARIANT).model.pseudo_labeler.seg_threshold
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(cfg)


@contextlib.contextmanager
def thresholds(model, seg=None, cls=None):
    """Temporarily set both policies' (tau_low, tau_high) buffers."""
    labeler = model.pseudo_labeler
    saved = [copy.deepcopy(labeler.seg_threshold.state_dict()),
             copy.deepcopy(labeler.cls_threshold.state_dict())]
    for policy, values in ((labeler.seg_threshold, seg),
                           (labeler.cls_threshold, cls)):
        if values is not None:
            policy.tau_low.fill_(values[0])
            policy.tau_high.fill_(values[1])
    try:
        yield
    finally:
        labeler.seg_threshold.load_state_dict(saved[0])
        labeler.cls_threshold.load_state_dict(saved[1])


def _sample(img_shape=(S, S), mask=None, label=None, hidden=False):
    s = SegDataSample(metainfo=dict(
        img_shape=img_shape, ori_shape=img_shape, pad_shape=(S, S)))
    if mask is not None:
        field = 'hidden_sem_seg' if hidden else 'gt_sem_seg'
        s.set_data({field: PixelData(data=mask[None].long())})
    if label is not None:
        field = 'hidden_label' if hidden else 'gt_label'
        s.set_data({field: torch.tensor([label])})
    return s


def _lesion_mask(i, lesion=True):
    mask = torch.zeros(S, S, dtype=torch.long)
    if lesion:
        mask[10 + 2 * i:30, 20:40 + 2 * i] = 1
    return mask


def make_batch(lesion=True, hidden=False, unsup_shapes=None, seed=0):
    """A multi-branch batch as MultiBranchSegDataPreProcessor returns it."""
    g = torch.Generator().manual_seed(seed)
    unsup_shapes = unsup_shapes or [(S, S)] * B_U
    weak = torch.randn(B_U, 3, S, S, generator=g)
    inputs = dict(
        sup=torch.randn(B_L, 3, S, S, generator=g),
        unsup_weak=weak,
        unsup_strong=weak + 0.5 * torch.randn(B_U, 3, S, S, generator=g))
    for i, (h, w) in enumerate(unsup_shapes):  # batch padding is zero
        for branch in ('unsup_weak', 'unsup_strong'):
            inputs[branch][i, :, h:] = 0
            inputs[branch][i, :, :, w:] = 0

    def unsup(i, shape):
        if not hidden:
            return _sample(shape)
        s = _sample(shape, _lesion_mask(i), hidden=True)
        s.hidden_label = torch.tensor([i % 3])
        return s

    data_samples = dict(
        sup=[_sample(mask=_lesion_mask(i, lesion), label=i % 3)
             for i in range(B_L)],
        unsup_weak=[unsup(i, sh) for i, sh in enumerate(unsup_shapes)],
        unsup_strong=[unsup(i, sh) for i, sh in enumerate(unsup_shapes)])
    return inputs, data_samples


# --------------------------------------------- hand-made teacher outputs
def hand_lesion_prob(b_u=B_U):
    """Teacher lesion probability on the weak views (B, S, S)."""
    p = torch.full((b_u, S, S), 0.02)  # background, confidence 0.98
    p[:, 8:24, 8:24] = 0.99  # lesion, confidence 0.99
    p[:, 24:32, 8:24] = 0.8  # lesion, confidence 0.8
    p[:, 40:48, :] = 0.3  # background, confidence 0.7
    return p


HAND_CLS = torch.tensor([[0.95, 0.03, 0.02],  # class 0, 0.95
                         [0.2, 0.7, 0.1]])  # class 1, 0.7


def expected_pseudo_masks(unsup_shapes):
    """By hand, for seg thresholds (0.75, 0.95): reliable -> class, else
    255; batch padding (outside img_shape) -> 255."""
    masks = torch.zeros(len(unsup_shapes), S, S, dtype=torch.long)
    masks[:, 8:24, 8:24] = 1
    masks[:, 24:32, 8:24] = IGNORE
    masks[:, 40:48, :] = IGNORE
    for i, (h, w) in enumerate(unsup_shapes):
        masks[i, h:] = IGNORE
        masks[i, :, w:] = IGNORE
    return masks


def patch_teacher(monkeypatch, model):
    """Keep the real teacher call (region, hidden targets) but replace its
    probabilities with the hand-made ones."""
    original = model.teacher_predictions

    def teacher_predictions(weak_inputs, data_samples):
        out = original(weak_inputs, data_samples)
        lesion = hand_lesion_prob(weak_inputs.shape[0])
        out['seg_probs'] = torch.stack([1 - lesion, lesion], dim=1)
        out['cls_probs'] = HAND_CLS[:weak_inputs.shape[0]].clone()
        return out

    monkeypatch.setattr(model, 'teacher_predictions', teacher_predictions)


def spy(monkeypatch, obj, name):
    """Record (args, result) of every call of ``obj.name``."""
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, result))
        return result

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def trainable_without_grad(model):
    return [n for n, p in model.named_parameters()
            if p.requires_grad and p.grad is None]


NORMAL_LOSS_KEYS = {
    'sup.seg.loss_ce', 'sup.seg.loss_dice', 'sup.cls.loss_cls',
    'sup.sal.loss_sal', 'unsup.seg.loss_ce', 'unsup.seg.loss_dice',
    'unsup.cls.loss_cls', 'con.loss_con_img', 'con.loss_con_pix',
    'ict.loss_ict_feat', 'ict.loss_ict_map'
}


def _run_loss(model, batch, backward=True):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    losses = model.loss(*batch)
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
        if 'loss' in key:
            assert value.requires_grad, key
    if backward:
        sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses


@pytest.fixture(scope='module')
def normal_losses(model):
    """Losses of a normal batch with confident (hand-made) pseudo-labels;
    returns (losses, trainable parameters without grad, teacher grads)."""
    mp = pytest.MonkeyPatch()
    try:
        patch_teacher(mp, model)
        # Unmixed strong views keep their image pseudo-labels, so the
        # reliable image 0 (class 0, like labelled image 0) trains the
        # image pseudo-label loss and is a SupCon positive.
        mp.setattr(model, 'cutmix_prob', 0.0)
        model.set_iteration(LATE)
        with thresholds(model, seg=(0.75, 0.95), cls=(0.6, 0.9)):
            losses = _run_loss(model, make_batch())
            # the confidence statistics kept for the threshold update
            stats = {k: (v['confidence_sum'].clone(), v['count'].clone())
                     for k, v in model.pseudo_labeler._pending.items()}
        missing = trainable_without_grad(model)
        teacher_grads = [n for n, p in model.teacher.named_parameters()
                         if p.grad is not None]
    finally:
        mp.undo()
        model.zero_grad(set_to_none=True)
    return losses, missing, teacher_grads, stats


# ------------------------------------------------------------- teacher
def test_teacher_is_mmengine_ema_of_student():
    """First update copies, then ``t <- (1 - m) t + m s`` (MMEngine's
    momentum m is the student's weight): after N updates
    ``t = (1-m)^(N-1) s_0 + sum_{k>=1} m (1-m)^(N-1-k) s_k``."""
    # a fresh build: a deep copy would not do, MMEngine's averaged model
    # keeps its own references to the teacher's state_dict tensors
    model = _build()
    m = _model_cfg().ema.momentum  # MMEngine's momentum: the student's weight
    assert model.teacher.momentum == m and model.teacher.update_buffers
    assert int(model.teacher.steps) == 0
    student, teacher = model.student, model.teacher.module
    param = 'cls_head.fc.bias'
    buffer = 'backbone.stem.1.running_mean'
    g = torch.Generator().manual_seed(0)
    values = {
        name: [torch.randn(student.state_dict()[name].shape, generator=g)
               for _ in range(4)]
        for name in (param, buffer)
    }
    for k in range(4):
        with torch.no_grad():
            for name in (param, buffer):
                student.state_dict()[name].copy_(values[name][k])
        model.update_teacher()
        n = k + 1
        for name in (param, buffer):
            v = values[name]
            expected = (1 - m)**(n - 1) * v[0] + sum(
                m * (1 - m)**(n - 1 - j) * v[j] for j in range(1, n))
            got = teacher.state_dict()[name]
            assert torch.allclose(got, expected, atol=1e-6), (name, n)
    # the EMA is a real average: not the student's last value
    assert not torch.allclose(teacher.state_dict()[param], values[param][-1])


def test_teacher_frozen_and_always_in_eval_mode(model):
    assert all(not p.requires_grad for p in model.teacher.parameters())
    for mode in (True, False, True):
        model.train(mode)
        assert model.student.training is mode
        assert not model.teacher.training
        assert not any(m.training for m in model.teacher.modules())


def test_teacher_gets_no_grad_and_student_gets_all(normal_losses):
    losses, missing, teacher_grads, _ = normal_losses
    assert teacher_grads == []
    assert missing == []
    assert {k for k in losses if 'loss' in k} == NORMAL_LOSS_KEYS
    # confident pseudo-labels really trained the student, and every term
    # of a normal batch is exercised (none is a DDP-safe 0 here)
    for key in NORMAL_LOSS_KEYS:
        assert float(losses[key]) > 0, key
    assert float(losses['zone.seg.reliable']) > 0
    assert float(losses['zone.cls.reliable']) == 0.5


def test_threshold_stats_cover_the_unlabelled_batch(normal_losses):
    _, _, _, stats = normal_losses
    seg_sums, seg_counts = stats['seg']
    cls_sums, cls_counts = stats['cls']
    assert float(seg_counts.sum()) == B_U * S * S  # no padding here
    assert float(cls_counts.sum()) == B_U
    # hand probabilities: class 0 with 0.95, class 1 with 0.7
    assert torch.allclose(cls_sums, torch.tensor([0.95, 0.7, 0.0]))
    assert torch.equal(cls_counts, torch.tensor([1.0, 1.0, 0.0]))


def test_loss_before_set_iteration_raises(model, monkeypatch):
    monkeypatch.setattr(model, 'iteration', None)
    with pytest.raises(RuntimeError, match='TeacherThresholdUpdateHook'):
        model.loss(*make_batch())
    with pytest.raises(RuntimeError, match='custom_hooks'):
        model.loss_weights()


def test_loss_weights_follow_ramp_configs(model, monkeypatch):
    monkeypatch.setattr(model, 'iteration', None)

    def sigmoid(t):
        x = (t - RAMP_START) / RAMP_LEN
        return math.exp(-5 * (1 - x)**2)

    for t, shape in ((0, 0.0), (RAMP_START - 1, 0.0),
                     (RAMP_START, sigmoid(RAMP_START)),
                     (RAMP_START + RAMP_LEN // 2,
                      sigmoid(RAMP_START + RAMP_LEN // 2)),
                     (RAMP_START + RAMP_LEN, 1.0), (LATE, 1.0)):
        model.set_iteration(t)
        weights = model.loss_weights()
        assert set(weights) == set(RAMPS)
        for key, value in RAMPS.items():
            assert weights[key] == pytest.approx(value * shape), (key, t)


# ---------------------------------------------------------- robustness
@pytest.mark.parametrize('case', ['nothing_reliable', 'no_lesion'])
def test_degenerate_batches_are_ddp_safe(model, normal_losses, case):
    """Same keys as a normal batch, finite values, and every trainable
    parameter (student and projectors) gets a gradient."""
    normal, *_ = normal_losses
    model.set_iteration(LATE)
    if case == 'nothing_reliable':
        with thresholds(model, seg=(1.0, 1.0), cls=(1.0, 1.0)):
            losses = _run_loss(model, make_batch())
        assert float(losses['zone.seg.reliable']) == 0
        assert float(losses['zone.cls.reliable']) == 0
        for key in ('unsup.seg.loss_ce', 'unsup.seg.loss_dice',
                    'unsup.cls.loss_cls'):
            assert float(losses[key]) == 0, key
    else:
        losses = _run_loss(model, make_batch(lesion=False))
    assert set(losses) == set(normal)
    assert trainable_without_grad(model) == []
    assert all(p.grad is None for p in model.teacher.parameters())
    model.zero_grad(set_to_none=True)


# ------------------------------------------------ pseudo-label wiring
def hand_threshold_loss(model, batch):
    """One seeded training-mode loss after every ramp-up, with the seg
    (0.75, 0.95) and cls (0.6, 0.9) thresholds the hand cases assume."""
    model.set_iteration(LATE)
    model.train()
    torch.manual_seed(0)
    with thresholds(model, seg=(0.75, 0.95), cls=(0.6, 0.9)), \
            torch.no_grad():
        return model.loss(*batch)


@pytest.mark.parametrize('cutmix_prob', [0.0, 1.0])
def test_pseudo_label_selection_wiring(model, monkeypatch, cutmix_prob):
    shapes = [(S, S), (48, 56)]  # image 1 is padded at the bottom/right
    batch = make_batch(unsup_shapes=shapes)
    strong = batch[0]['unsup_strong']
    patch_teacher(monkeypatch, model)
    selections = spy(monkeypatch, model.pseudo_labeler, 'forward')
    forwards = spy(monkeypatch, model.student, 'forward_train')
    seg_calls = spy(monkeypatch, model.student, 'seg_losses')
    monkeypatch.setattr(model, 'cutmix_prob', cutmix_prob)
    losses = hand_threshold_loss(model, batch)
    (_, selected), = selections
    # one joint student forward, or labelled then strong views
    assert 1 <= len(forwards) <= 2
    student_x = torch.cat([args[0] for args, _ in forwards])
    student_logits = torch.cat([out.cls_logits for _, out in forwards])
    expected = expected_pseudo_masks(shapes)
    masks = selected.masks
    assert masks.shape == (B_U, S, S)
    # the unsupervised seg loss is fed exactly these masks
    (_, _), (unsup_args, _) = seg_calls
    fed = torch.stack([s.gt_sem_seg.data[0] for s in unsup_args[1]])
    assert torch.equal(fed, masks)
    cls_zones = selected.cls_zones
    assert cls_zones.reliable.tolist() == [True, False]
    assert cls_zones.ambiguous.tolist() == [False, True]
    mixed_x = student_x[B_L:]
    logits = student_logits[B_L:]
    if cutmix_prob == 0.0:
        assert torch.equal(mixed_x, strong)
        assert torch.equal(masks, expected)
        assert selected.cls_usable.tolist() == [True, True]
        assert selected.cls_reliable.tolist() == [True, False]
        # reliable image 0 only, averaged over both unlabelled images
        ce = F.cross_entropy(logits[:1], torch.tensor([0])) / B_U
        assert torch.allclose(losses['unsup.cls.loss_cls'], ce, atol=1e-6)
        assert float(losses['zone.cls.reliable']) == 0.5
        assert float(losses['zone.cls.usable']) == 1.0
    else:
        assert selected.cls_usable.tolist() == [False, False]
        assert selected.cls_reliable.tolist() == [False, False]
        assert float(losses['unsup.cls.loss_cls']) == 0.0
        assert float(losses['zone.cls.reliable']) == 0.0
        assert float(losses['zone.cls.usable']) == 0.0
        # each mask = own mask outside the pasted box, the partner's inside
        for i in range(B_U):
            j = 1 - i  # the only other image
            box = (mixed_x[i] != strong[i]).any(dim=0)
            assert box.any()
            assert torch.equal(mixed_x[i][:, box], strong[j][:, box])
            assert torch.equal(masks[i][box], expected[j][box])
            assert torch.equal(masks[i][~box], expected[i][~box])


# ------------------------------------------------------------ ablations
@pytest.mark.parametrize('overrides, present, absent', [
    (dict(img_contrast=None, consistency=None), {'con.loss_con_pix'},
     {'con.loss_con_img', 'ict.loss_ict_feat', 'ict.loss_ict_map'}),
    (dict(pix_contrast=None),
     {'con.loss_con_img', 'ict.loss_ict_feat', 'ict.loss_ict_map'},
     {'con.loss_con_pix'}),
])
def test_ablation_variants_key_sets(overrides, present, absent):
    model = _build(**overrides)
    for name, value in overrides.items():
        assert getattr(model, name) is None, name
    model.set_iteration(LATE)
    model.train()
    with torch.no_grad():
        losses = model.loss(*make_batch())
    keys = {k for k in losses if 'loss' in k}
    assert present <= keys
    assert not absent & set(losses)
    sup_unsup = {k for k in NORMAL_LOSS_KEYS
                 if k.startswith(('sup.', 'unsup.'))}
    assert sup_unsup <= keys
    assert keys - sup_unsup == present


@pytest.mark.parametrize('head', ['img_contrast', 'pix_contrast'])
def test_projector_without_loss_is_rejected(head):
    cfg = _model_cfg()
    del cfg[head]['loss']
    init_default_scope('mmseg')
    with pytest.raises(TypeError, match="'loss'"):
        MODELS.build(cfg)


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="'both'"):
        _build(predict_on='both')
    with pytest.raises(ValueError, match='1.5'):
        _build(cutmix_prob=1.5)
    with pytest.raises(ValueError, match="'both'"):
        _build(consistency=dict(attention='both'))


# -------------------------------------------------------------- predict
def test_predict_on_student_or_teacher(model, monkeypatch):
    model = copy.deepcopy(model).eval()
    with torch.no_grad():  # the student drifts away from the teacher
        model.student.cls_head.fc.bias += torch.tensor([3.0, -3.0, 0.0])
        model.student.decode_head.conv_seg.bias += torch.tensor([2.0, -2.0])
    x = make_batch()[0]['sup'][:1]
    metas = [_sample((S, S))]

    def run(net):
        with torch.no_grad():
            pred, = net.predict(x, copy.deepcopy(metas))
        return pred.pred_score, pred.seg_logits.data

    teacher_out = run(model.teacher.module)
    student_out = run(model.student)
    assert not torch.allclose(teacher_out[0], student_out[0])
    assert not torch.allclose(teacher_out[1], student_out[1])
    for predict_on, reference in (('teacher', teacher_out),
                                  ('student', student_out)):
        monkeypatch.setattr(model, 'predict_on', predict_on)
        score, seg = run(model)
        assert torch.allclose(score, reference[0], atol=1e-6), predict_on
        assert torch.allclose(seg, reference[1], atol=1e-5), predict_on
        with torch.no_grad():
            _, cls_logits = model(x, mode='tensor')
        assert torch.allclose(cls_logits[0].softmax(0), reference[0],
                              atol=1e-6), predict_on


# ---------------------------------------------------------- diagnostics
def test_pseudo_label_stats_on_a_hand_case(adaptive_model):
    """4 unlabelled images of 2 x 4 pixels, seg thresholds (0.75, 0.95),
    cls thresholds (0.6, 0.9)."""
    model = adaptive_model
    lesion = torch.tensor([
        # image 0: col 3 is padding; (0, 2) ambiguous; (1, 2) hidden 255
        [[0.99, 0.99, 0.2, 0.6], [0.97, 0.02, 0.99, 0.99]],
        # image 1: all reliable lesion, hidden all lesion: 8 / 8
        [[0.99] * 4] * 2,
        # image 2: all reliable lesion, hidden all background: 0 / 8
        [[0.99] * 4] * 2,
        # image 3: all padding
        [[0.99] * 4] * 2,
    ])
    hidden_masks = torch.tensor([
        [[1, 0, 1, 1], [1, 0, IGNORE, 0]],
        [[1] * 4] * 2,
        [[0] * 4] * 2,
        [[1] * 4] * 2,
    ])
    region = torch.ones(4, 2, 4, dtype=torch.bool)
    region[0, :, 3] = False
    region[3] = False
    teacher = dict(
        seg_probs=torch.stack([1 - lesion, lesion], dim=1),
        cls_probs=torch.tensor([
            [0.95, 0.03, 0.02],  # reliable 0, hidden 0: correct
            [0.05, 0.92, 0.03],  # reliable 1, hidden 2: wrong
            [0.96, 0.02, 0.02],  # reliable but CutMixed: not counted
            [0.97, 0.02, 0.01],  # reliable, hidden unknown (-1)
        ]),
        region=region,
        mixed=torch.tensor([False, False, True, False]),
        hidden_masks=hidden_masks,
        hidden_labels=torch.tensor([0, 2, 0, -1]))
    with thresholds(model, seg=(0.75, 0.95), cls=(0.6, 0.9)):
        pseudo = model.pseudo_labeler(**teacher)
        stats = model.pseudo_labeler.diagnostics(pseudo)
    # seg, image 0: chosen (0,0) (0,1) (1,0) (1,1), correct all but (0,1)
    stats_pl = model.pseudo_labeler.pop_counts()
    assert stats_pl['seg.precision'] == (3.0 + 8.0 + 0.0, 4.0 + 8.0 + 8.0)
    # lesion pixels only: labelled lesion (0,0) (0,1) (1,0) + 8 + 8, of
    # which (0,0) (1,0) + 8 are lesion; hidden lesion (0,0) (0,2)
    # (ambiguous: no pseudo-label) (1,0) + 8 (+ 0 in image 2)
    assert stats_pl['seg.lesion.precision'] == (2.0 + 8.0, 3.0 + 16.0)
    assert stats_pl['seg.lesion.recall'] == (2.0 + 8.0, 3.0 + 8.0)
    # no hidden lesion pixel got a reliable background pseudo-label
    assert stats_pl['seg.lesion.as_background'] == (0.0, 3.0 + 8.0)
    # images: usable with a known label are 0 (reliable 0, hidden 0) and 1
    # (reliable 1, hidden 2)
    assert stats_pl['cls.precision'] == (1.0, 2.0)
    assert stats_pl['cls.0.precision'] == (1.0, 1.0)
    assert stats_pl['cls.0.recall'] == (1.0, 1.0)
    assert stats_pl['cls.1.precision'] == (0.0, 1.0)
    assert stats_pl['cls.1.recall'] == (0.0, 0.0)
    assert stats_pl['cls.2.precision'] == (0.0, 0.0)
    assert stats_pl['cls.2.recall'] == (0.0, 1.0)
    # zone ratios over valid pixels (6 + 8 + 8) / usable images (3)
    assert float(stats['zone.seg.ambiguous']) == pytest.approx(1 / 22)
    assert float(stats['zone.seg.reliable']) == pytest.approx(21 / 22)
    assert float(stats['zone.seg.unreliable']) == 0
    assert float(stats['zone.cls.reliable']) == 1.0
    # pseudo masks: padding and the ambiguous pixel are ignored
    assert pseudo.masks[0].tolist() == [[1, 1, IGNORE, IGNORE],
                                        [1, 0, 1, IGNORE]]
    assert (pseudo.masks[3] == IGNORE).all()
    # the counts are handed out once
    assert model.pseudo_labeler.pop_counts() == {}


def test_no_hidden_labels_means_no_precision(adaptive_model):
    model = adaptive_model
    lesion = torch.full((1, 2, 2), 0.99)
    teacher = dict(seg_probs=torch.stack([1 - lesion, lesion], dim=1),
                   cls_probs=torch.tensor([[0.95, 0.03, 0.02]]),
                   region=torch.ones(1, 2, 2, dtype=torch.bool),
                   mixed=torch.tensor([False]))
    model.pseudo_labeler.diagnostics(model.pseudo_labeler(**teacher))
    assert model.pseudo_labeler.pop_counts() == {}


def test_update_thresholds_follows_adaptive_closed_form(adaptive_model):
    model = adaptive_model
    labeler = model.pseudo_labeler
    seg_policy, cls_policy = labeler.seg_threshold, labeler.cls_threshold
    saved = [copy.deepcopy(seg_policy.state_dict()),
             copy.deepcopy(cls_policy.state_dict())]
    try:
        seg_before = [t.clone() for t in seg_policy.thresholds()]
        cls_before = [t.clone() for t in cls_policy.thresholds()]
        sigma0 = seg_policy.class_confidence.tolist()
        tau_g0 = float(seg_policy.global_confidence)
        # the configured policy: momentum, margin, high_range, low_floor
        cfg = _model_cfg().pseudo_labeler.seg_threshold
        m, margin, floor = cfg.momentum, cfg.margin, cfg.low_floor
        lo, hi = cfg.high_range
        sums, counts = [90.0, 6.0], [100.0, 10.0]
        labeler._pending = dict(seg=dict(confidence_sum=torch.tensor(sums),
                                         count=torch.tensor(counts)))
        labeler.update(iteration=7)
        tau_g = m * tau_g0 + (1 - m) * sum(sums) / sum(counts)
        sigma = [m * s + (1 - m) * a / c
                 for s, a, c in zip(sigma0, sums, counts)]
        high = [min(max(s / max(sigma) * tau_g, lo), hi) for s in sigma]
        low = [min(max(h - margin, floor), h) for h in high]
        new_low, new_high = seg_policy.thresholds()
        assert torch.allclose(new_high, torch.tensor(high), atol=1e-7)
        assert torch.allclose(new_low, torch.tensor(low), atol=1e-7)
        assert not torch.equal(new_high, seg_before[1])
        # no cls statistics: the cls policy is untouched
        for a, b in zip(cls_policy.thresholds(), cls_before):
            assert torch.equal(a, b)
        # statistics are consumed
        assert labeler._pending == {}
    finally:
        seg_policy.load_state_dict(saved[0])
        cls_policy.load_state_dict(saved[1])


def test_gather_pixels_matches_flattened_rows():
    from hermes_mm.models.heads.pixel_contrast_head import gather_pixels
    from hermes_mm.models.pseudo_labels import flatten_pixels
    x = torch.randn(3, 5, 4, 6, requires_grad=True)
    index = torch.tensor([0, 7, 30, 71])
    torch.testing.assert_close(
        gather_pixels(x, index), flatten_pixels(x)[index])
    gather_pixels(x, index).sum().backward()
    assert int((x.grad.flatten(2).abs().sum(1) > 0).sum()) == 4


@pytest.mark.parametrize('ema_type', ['ForeachExponentialMovingAverage',
                                      'ExponentialMovingAverage'])
def test_teacher_copies_student_during_warmup_then_ema(ema_type):
    """Before ``teacher_warmup_iters`` the teacher is the student's copy;
    from then on one EMA step per call, whichever averaged model type the
    config names (MMEngine's plain EMA keeps the warm-up too)."""
    ema = dict(type=ema_type, momentum=0.25, update_buffers=True)
    model = _build(teacher_warmup_iters=2, ema=ema)
    assert type(model.teacher).__name__ == ema_type
    model.init_weights()

    def first_param(module):
        return next(module.parameters()).detach().clone()

    def shift_student():
        with torch.no_grad():
            for p in model.student.parameters():
                p.add_(1.0)

    for iteration in (0, 1):
        shift_student()
        model.update_teacher(iteration)
        torch.testing.assert_close(
            first_param(model.teacher.module), first_param(model.student))
    before = first_param(model.teacher.module)
    shift_student()
    model.update_teacher(2)
    torch.testing.assert_close(
        first_param(model.teacher.module),
        0.75 * before + 0.25 * first_param(model.student))
    # default: the warm-up ends where the unsupervised ramp starts
    assert _build().teacher_warmup_iters == RAMP_START


def test_lesion_pixels_given_reliable_background_are_counted(adaptive_model):
    """One 1 x 4 image, every hidden pixel lesion; teacher lesion
    probabilities 0.99 (reliable lesion), 0.02 (reliable background),
    0.5 (unreliable), 0.9 (ambiguous lesion): 1 of 4 lesion pixels is
    trained as background."""
    model = adaptive_model
    lesion = torch.tensor([[[0.99, 0.02, 0.5, 0.9]]])
    teacher = dict(
        seg_probs=torch.stack([1 - lesion, lesion], dim=1),
        cls_probs=torch.tensor([[0.5, 0.3, 0.2]]),
        region=torch.ones(1, 1, 4, dtype=torch.bool),
        mixed=torch.tensor([False]),
        hidden_masks=torch.ones(1, 1, 4, dtype=torch.long))
    with thresholds(model, seg=(0.75, 0.95), cls=(0.6, 0.9)):
        model.pseudo_labeler.diagnostics(model.pseudo_labeler(**teacher))
    stats = model.pseudo_labeler.pop_counts()
    assert stats['seg.lesion.as_background'] == (1.0, 4.0)
    assert stats['seg.lesion.recall'] == (1.0, 4.0)
