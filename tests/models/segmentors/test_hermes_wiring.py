"""Wiring tests of HermesSegmentor: hand-built teacher outputs in, every loss
term out, each checked against a closed form written here.

The teacher network is replaced by a function *of its input image*: channel
0 of an image is the lesion logit of every pixel and channel 1, row 0, holds
the class logits. The weak and strong views carry different "teacher
answers", so if anything but the weak view is labelled, every unlabelled
term changes. Each term is non-zero and recomputed from the student's
recorded outputs:

- ``unsup.seg.*``: the decode head's losses against the reliable pixels of
  the *weak* view (CE by hand as well);
- ``unsup.cls.loss_cls``: CE of the reliable, unmixed image, averaged over
  the unlabelled images;
- ``con.loss_con_img``: SupCon with labelled + reliable anchors and the
  ambiguous image as a negative for the classes it is confidently not;
- ``con.loss_con_pix``: prototype InfoNCE with labelled and reliable
  unlabelled anchors and ambiguous hard negatives (everything sampled);
- ``ict.*``: consistency over the images with a lesion (labelled: ground
  truth; unlabelled: reliable lesion pseudo-label), lesion-free ones skipped;
- with CutMix, all of the above follow the pasted box.

These tests check behaviour (loss values given inputs), so that they keep
holding when the segmentor's internals are reorganised.
"""
import dataclasses
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
from hermes_mm.models.segmentors.multi_task_segmentor import MultiTaskOutputs
from hermes_mm.registry import MODELS
from .test_hermes_segmentor import spy

CFG = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs', '_base_',
               'models', 'hermes_r18_small_itas.py')
S = 64  # input size
STRIDE = 8  # pixel-contrast features (pix_contrast.in_index=1): 8 x 8
G = S // STRIDE
IGNORE = 255
LATE = 10**6  # after every ramp-up
W_UNSUP, W_CON, W_ICT = 1.0, 0.1, 0.1  # the config's ramp values
SEG_TAU = (0.75, 0.95)
CLS_TAU = (0.6, 0.9)
LESION_CLASSES = (0, 1)


# ------------------------------------------------------------------ set-up
def build(cutmix_prob=0.0):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(CFG).model
    cfg.data_preprocessor.data_preprocessor.size = (S, S)
    cfg.cutmix_prob = cutmix_prob
    # Budgets above the 4 x 8 x 8 pixels: every candidate is sampled, so the
    # pixel loss is deterministic and has a closed form.
    cfg.pix_contrast.loss.num_anchors_per_class = 10**4
    cfg.pix_contrast.loss.num_negatives = 10**4
    model = MODELS.build(cfg)
    model.init_weights()
    labeler = model.pseudo_labeler
    with torch.no_grad():
        for policy, (low, high) in ((labeler.seg_threshold, SEG_TAU),
                                    (labeler.cls_threshold, CLS_TAU)):
            policy.tau_low.fill_(low)
            policy.tau_high.fill_(high)
    model.set_iteration(LATE)
    model.train()
    return model


def blocks(values):
    """(B, G, G) block values -> (B, S, S) piecewise-constant map."""
    return values.repeat_interleave(STRIDE, 1).repeat_interleave(STRIDE, 2)


def weak_lesion_prob():
    """Teacher lesion probability of the two weak views, on 8 x 8 blocks.

    0.99 reliable lesion, 0.02 reliable background (seg tau (0.75, 0.95));
    0.8 ambiguous lesion (negative for background: 0.2 < 1 - 0.75);
    0.15 ambiguous background (negative for lesion); 0.3 unreliable.
    """
    p = torch.full((2, G, G), 0.02)
    p[0, 1:3, 1:3] = 0.99
    p[0, 3, 1:3] = 0.8
    p[0, 5, :] = 0.3
    p[0, 6, :] = 0.15
    p[1, 4:6, 4:7] = 0.99
    p[1, 2, :] = 0.15
    p[1, 0, 6:] = 0.8
    return blocks(p)


#: Teacher class probabilities of the weak views (cls tau (0.6, 0.9)):
#: image 0 reliable class 0; image 1 ambiguous class 1, confidently not
#: class 0 (0.2 < 0.4) nor class 2 (0.1 < 0.4).
WEAK_CLS = torch.tensor([[0.95, 0.03, 0.02], [0.2, 0.7, 0.1]])
SUP_LABELS = [0, 2]  # image 1 is lesion-free ("normal")


def sup_masks():
    m = torch.zeros(2, G, G, dtype=torch.long)
    m[0, 2:4, 2:5] = 1
    m[1, 7, 7] = IGNORE  # lesion-free, with an ignored block
    return blocks(m)


def encode(lesion_prob, cls_probs, g):
    """Images whose hand-made teacher answer is (lesion_prob, cls_probs)."""
    x = torch.randn(lesion_prob.shape[0], 3, S, S, generator=g)
    x[:, 0] = torch.logit(lesion_prob.double()).float()
    x[:, 1, 0, :cls_probs.shape[1]] = cls_probs.log()
    return x


def hand_teacher(x):
    """The teacher network: a function of its input image."""
    seg_logits = torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], dim=1)
    return MultiTaskOutputs(
        task_feats=None, seg_logits=seg_logits,
        cls_logits=x[:, 1, 0, :WEAK_CLS.shape[1]].clone())


def make_batch():
    g = torch.Generator().manual_seed(0)
    weak = encode(weak_lesion_prob(), WEAK_CLS, g)
    # The strong views would make the teacher say the opposite: lesion and
    # background swapped, classes rotated.
    strong = encode(1 - weak_lesion_prob(), WEAK_CLS.roll(1, dims=1), g)
    meta = dict(img_shape=(S, S), ori_shape=(S, S), pad_shape=(S, S))

    def sample(mask=None, label=None):
        s = SegDataSample(metainfo=meta)
        if mask is not None:
            s.gt_sem_seg = PixelData(data=mask[None])
            s.gt_label = torch.tensor([label])
        return s

    inputs = dict(sup=torch.randn(2, 3, S, S, generator=g),
                  unsup_weak=weak, unsup_strong=strong)
    data_samples = dict(
        sup=[sample(m, y) for m, y in zip(sup_masks(), SUP_LABELS)],
        unsup_weak=[sample() for _ in range(2)],
        unsup_strong=[sample() for _ in range(2)])
    return inputs, data_samples


def run(model, monkeypatch, batch=None):
    """One loss call with the hand-made teacher; returns the losses, the
    student's (input, outputs) and the buffers before the step."""
    monkeypatch.setattr(model.teacher.module, 'forward_train', hand_teacher)
    forwards = spy(monkeypatch, model.student, 'forward_train')
    before = dict(
        queue=model.img_contrast.loss_module.queued(),
        prototypes=model.pix_contrast.loss_module.prototypes.clone(),
        proto_valid=model.pix_contrast.loss_module.proto_valid.clone())
    torch.manual_seed(1)
    losses = model.loss(*(batch or make_batch()))
    # One student forward over labelled + strong images, or one per part:
    # either way, the images it saw and its outputs, in batch order.
    assert 1 <= len(forwards) <= 2
    inputs = torch.cat([args[0] for args, _ in forwards])
    outputs = forwards[0][1]
    for _, more in forwards[1:]:
        outputs = join(outputs, more)
    return losses, inputs, outputs, before


def join(a, b):
    """Concatenate two batches of outputs (tensors, tuples, dataclasses)
    along the batch dimension."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, (tuple, list)):
        return type(a)(join(x, y) for x, y in zip(a, b))
    return dataclasses.replace(a, **{
        f.name: join(getattr(a, f.name), getattr(b, f.name))
        for f in dataclasses.fields(a)})


# ------------------------------------------------------ closed forms
def zones(probs, low, high):
    """Dual-threshold zones of (N, K) probabilities, written out."""
    conf, label = probs.max(dim=1)
    reliable = conf >= high
    ambiguous = (conf >= low) & ~reliable
    others = torch.ones_like(probs, dtype=torch.bool)
    others[torch.arange(len(label)), label] = False
    negative = ambiguous[:, None] & others & (probs < 1 - low)
    return label, reliable, negative


def pseudo_masks(lesion_prob):
    p = lesion_prob
    masks = torch.full(p.shape, IGNORE, dtype=torch.long)
    masks[p >= SEG_TAU[1]] = 1
    masks[1 - p >= SEG_TAU[1]] = 0
    return masks


def hand_ce(seg_logits, masks):
    """MMSeg CE (avg_non_ignore=False): sum over non-ignored pixels / all
    pixels, logits resized bilinearly to the label size."""
    logits = F.interpolate(seg_logits, size=masks.shape[1:], mode='bilinear',
                           align_corners=False)
    ce = F.cross_entropy(logits, masks, ignore_index=IGNORE, reduction='sum')
    return ce / masks.numel()


def hand_supcon(emb, labels, anchors, negatives, temperature):
    emb = F.normalize(emb, dim=1)
    terms = []
    for i in anchors.nonzero().flatten().tolist():
        y = labels[i]
        pos = [j for j in range(len(labels))
               if j != i and anchors[j] and labels[j] == y]
        neg = [j for j in range(len(labels))
               if (anchors[j] and labels[j] != y)
               or (not anchors[j] and negatives[j, y])]
        if not pos:
            continue
        s = emb[i] @ emb.t() / temperature
        log_denom = s[pos + neg].logsumexp(0)
        terms.append(-torch.stack([s[p] - log_denom for p in pos]).mean())
    return torch.stack(terms).mean()


def hand_pixel_contrast(model, outputs, lesion_prob, before):
    """Prototype InfoNCE with everything sampled and no valid prototype:
    centres are the batch means of the anchors."""
    feats = outputs.task_feats.seg_feats[model.pix_contrast.in_index]
    gt = sup_masks()[:, ::STRIDE, ::STRIDE].flatten()  # nearest
    probs = F.adaptive_avg_pool2d(
        torch.stack([1 - lesion_prob, lesion_prob], 1), (G, G))
    probs = probs.permute(0, 2, 3, 1).reshape(-1, 2)
    label_u, reliable_u, negative_u = zones(probs, *SEG_TAU)
    labels = torch.cat([gt.masked_fill(gt == IGNORE, 0), label_u])
    anchors = torch.cat([gt != IGNORE, reliable_u])
    negatives = torch.cat([torch.zeros(gt.numel(), 2, dtype=torch.bool),
                           negative_u])
    per_class = {}
    for c in range(2):
        a = anchors & (labels == c)
        if a.any():
            per_class[c] = (a, (~anchors & negatives[:, c])
                            | (anchors & ~a))
    used = torch.zeros_like(anchors)
    for a, n in per_class.values():
        used |= a | n
    index = used.nonzero().flatten()
    rows = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])[index]
    emb = F.normalize(
        model.pix_contrast.projector.forward_pixels(rows), dim=1)
    assert not before['proto_valid'].any()
    centres = {c: F.normalize(emb[a[index]].detach().sum(0), dim=0)
               for c, (a, _) in per_class.items()}
    pix_loss = model.pix_contrast.loss_module
    temperature = pix_loss.temperature
    total, count = 0., 0
    for c, (a, n) in per_class.items():
        keys = [centres[c]] + list(emb[n[index]]) + [
            centres[o] for o in centres if o != c]
        logits = emb[a[index]] @ torch.stack(keys).t() / temperature
        total = total + (logits.logsumexp(1) - logits[:, 0]).sum()
        count += int(a.sum())
    return pix_loss.loss_weight * total / count, dict(
        unsup_anchors=int(reliable_u.sum()),
        hard=int(negative_u.any(1).sum()))


def hand_consistency(model, outputs, valid):
    task_feats = outputs.task_feats
    cls_map = task_feats.cls_map
    size = cls_map.shape[2:]
    seg = model.student.seg_probabilities(outputs.seg_logits, size)[:, 1]
    cams = model.student.class_activation_maps(task_feats)
    candidates = torch.tensor(LESION_CLASSES)
    chosen = candidates[outputs.cls_logits[:, candidates].argmax(1)]
    cam = cams[torch.arange(len(chosen)), chosen].relu()
    attn = cam / cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    f_seg = (cls_map * seg[:, None]).sum((2, 3)) / seg.sum((1, 2))[:, None]
    f_cls = (cls_map * attn[:, None]).sum((2, 3)) / attn.sum((1, 2))[:, None]
    feat = 1 - F.cosine_similarity(f_seg, f_cls, dim=1)
    sq = (attn - seg).pow(2).mean((1, 2))
    return feat[valid].mean(), sq[valid].mean()


def assert_close(got, want, name):
    assert float(want) != 0, f'{name}: the closed form is 0, not a test'
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-4,
                               atol=1e-6, msg=name)


# ------------------------------------------------------------- tests
@pytest.fixture(scope='module')
def unmixed():
    model = build(cutmix_prob=0.0)
    monkeypatch = pytest.MonkeyPatch()
    try:
        losses, student_in, outputs, before = run(model, monkeypatch)
    finally:
        monkeypatch.undo()
    return model, losses, student_in, outputs, before


def test_student_trains_on_the_strong_view_unmixed(unmixed):
    _, _, student_in, _, _ = unmixed
    inputs, _ = make_batch()
    assert torch.equal(student_in[:2], inputs['sup'])
    assert torch.equal(student_in[2:], inputs['unsup_strong'])


def test_pixel_pseudo_labels_come_from_the_weak_view(unmixed):
    model, losses, _, outputs, _ = unmixed
    masks = pseudo_masks(weak_lesion_prob())
    assert (masks == 1).any() and (masks == 0).any() and (
        masks == IGNORE).any()
    logits = outputs.seg_logits[2:]
    assert_close(losses['unsup.seg.loss_ce'], W_UNSUP * hand_ce(logits,
                                                                masks),
                 'unsup.seg.loss_ce')
    samples = []
    for mask in masks:
        s = SegDataSample(metainfo=dict(img_shape=(S, S)))
        s.gt_sem_seg = PixelData(data=mask[None])
        samples.append(s)
    reference = model.student.seg_losses(logits, samples)
    for key in ('loss_ce', 'loss_dice'):
        assert_close(losses[f'unsup.seg.{key}'], W_UNSUP * reference[key],
                     key)


def test_image_pseudo_label_is_the_reliable_weak_class(unmixed):
    model, losses, _, outputs, _ = unmixed
    # image 0: reliable class 0; image 1: ambiguous -> weight 0
    ce = F.cross_entropy(outputs.cls_logits[2:3], torch.tensor([0])) / 2
    loss_weight = model.student.cls_head.loss_module.loss_weight
    assert_close(losses['unsup.cls.loss_cls'], W_UNSUP * loss_weight * ce,
                 'unsup.cls.loss_cls')


def test_image_contrast_anchors_and_ambiguous_negatives(unmixed):
    model, losses, _, outputs, before = unmixed
    assert before['queue'][0].numel() == 0  # no positives from the queue
    img_loss = model.img_contrast.loss_module
    emb = model.img_contrast.projector(outputs.task_feats.cls_vec)
    labels = torch.tensor(SUP_LABELS + [0, 1])
    anchors = torch.tensor([True, True, True, False])  # image 1 ambiguous
    negatives = torch.zeros(4, 3, dtype=torch.bool)
    negatives[3, [0, 2]] = True
    want = hand_supcon(emb, labels, anchors, negatives,
                       img_loss.temperature)
    assert_close(losses['con.loss_con_img'],
                 W_CON * img_loss.loss_weight * want, 'con.loss_con_img')
    # the ambiguous image matters: without it the value differs
    without = hand_supcon(emb, labels, anchors, torch.zeros_like(negatives),
                          img_loss.temperature)
    assert not torch.allclose(without, want, rtol=1e-4)


def test_pixel_contrast_anchors_and_hard_negatives(unmixed):
    model, losses, _, outputs, before = unmixed
    want, counts = hand_pixel_contrast(model, outputs, weak_lesion_prob(),
                                       before)
    assert counts['unsup_anchors'] > 0 and counts['hard'] > 0
    assert_close(losses['con.loss_con_pix'], W_CON * want,
                 'con.loss_con_pix')
    # prototypes were set from this step's anchors
    assert model.pix_contrast.loss_module.proto_valid.all()


def test_consistency_covers_every_lesion_image(unmixed):
    model, losses, _, outputs, _ = unmixed
    # labelled image 1 is lesion-free (skipped); both unlabelled images have
    # reliable lesion pseudo-labels in the weak view
    valid = torch.tensor([True, False, True, True])
    feat, sq = hand_consistency(model, outputs, valid)
    assert_close(losses['ict.loss_ict_feat'], W_ICT * feat, 'loss_ict_feat')
    assert_close(losses['ict.loss_ict_map'], W_ICT * sq, 'loss_ict_map')


def test_every_term_is_nonzero(unmixed):
    _, losses, *_ = unmixed
    for key, value in losses.items():
        if 'loss' in key:
            assert float(value) > 0, key


def test_cutmix_box_moves_every_dense_target(monkeypatch):
    """Both strong views are mixed: the box found in the student's input
    carries the partner's pseudo-labels into the pixel losses and the
    consistency mask; mixed images lose their image pseudo-label."""
    model = build(cutmix_prob=1.0)
    losses, student_in, outputs, before = run(model, monkeypatch)
    strong = make_batch()[0]['unsup_strong']
    mixed_x = student_in[2:]
    lesion = weak_lesion_prob()
    mixed_lesion = lesion.clone()
    for i in range(2):
        box = (mixed_x[i] != strong[i]).any(dim=0)
        assert 0 < int(box.sum()) < S * S
        assert torch.equal(mixed_x[i][:, box], strong[1 - i][:, box])
        mixed_lesion[i][box] = lesion[1 - i][box]
    masks = pseudo_masks(mixed_lesion)
    assert not torch.equal(masks, pseudo_masks(lesion))
    assert_close(losses['unsup.seg.loss_ce'],
                 W_UNSUP * hand_ce(outputs.seg_logits[2:], masks),
                 'unsup.seg.loss_ce')
    want, _ = hand_pixel_contrast(model, outputs, mixed_lesion, before)
    assert_close(losses['con.loss_con_pix'], W_CON * want, 'loss_con_pix')
    unsup_valid = (masks == 1).flatten(1).any(1)
    valid = torch.cat([torch.tensor([True, False]), unsup_valid])
    feat, sq = hand_consistency(model, outputs, valid)
    assert_close(losses['ict.loss_ict_map'], W_ICT * sq, 'loss_ict_map')
    assert_close(losses['ict.loss_ict_feat'], W_ICT * feat, 'loss_ict_feat')
    # a mixed image has no class: no image pseudo-label, anchor or negative
    assert float(losses['unsup.cls.loss_cls']) == 0
    assert float(losses['zone.cls.reliable']) == 0
    # labelled anchors only: classes 0 and 2, one each, no positive -> 0
    assert float(losses['con.loss_con_img']) == 0


def test_prototype_update_runs_when_nothing_is_sampled(monkeypatch):
    """``update_prototypes`` all-reduces: a rank whose pixel sample is empty
    (no labelled pixel, nothing reliable) must still call it, or DDP
    hangs on the other ranks' all-reduce."""
    model = build(cutmix_prob=0.0)
    with torch.no_grad():  # nothing reliable (0.99 < 1)
        model.pseudo_labeler.seg_threshold.tau_low.fill_(1.0)
        model.pseudo_labeler.seg_threshold.tau_high.fill_(1.0)
    inputs, data_samples = make_batch()
    for s in data_samples['sup']:
        s.gt_sem_seg.data.fill_(IGNORE)
    updates = spy(monkeypatch, model.pix_contrast.loss_module,
                  'update_prototypes')
    losses, *_ = run(model, monkeypatch, (inputs, data_samples))
    assert float(losses['con.loss_con_pix']) == 0
    assert len(updates) == 1
