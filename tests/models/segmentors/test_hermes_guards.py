"""The opt-in issue-20 guards are wired into a Hermes step.

``configs/demo/variants/hermes_synthetic_guarded.py`` turns them on:
distribution alignment of the image pseudo-labels must see this step's
*labelled* labels, and the confident-lesion consistency must read the
teacher's image probabilities of the same views.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from .test_hermes_segmentor import LATE, _build, make_batch

GUARDED = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs', 'demo',
                   'variants', 'hermes_synthetic_guarded.py')


def guarded_model():
    model_cfg = Config.fromfile(GUARDED).model
    return _build(
        pseudo_labeler=model_cfg.pseudo_labeler,
        consistency=model_cfg.consistency,
        lesion_share_gate=model_cfg.lesion_share_gate)


def test_alignment_tracks_labelled_labels_and_teacher_probabilities():
    model = guarded_model()
    align = model.pseudo_labeler.cls_alignment
    assert align is not None and align.training
    inputs, samples = make_batch()
    model.set_iteration(LATE)
    model.train()
    losses = model.loss(inputs, samples)
    assert 'gate.lesion_share' in losses
    labels = torch.cat([s.gt_label.view(-1) for s in samples['sup']])
    counts = torch.bincount(labels, minlength=3).float()
    # first batch: the running means are this batch's
    torch.testing.assert_close(align.target_prior, counts / counts.sum())
    with torch.no_grad():
        teacher = model.teacher_predictions(inputs['unsup_weak'],
                                            samples['unsup_strong'])
    torch.testing.assert_close(align.model_prior,
                               teacher['cls_probs'].mean(dim=0))


def consistency_valid(model):
    """The ``valid`` mask the consistency loss gets in one late step with
    a teacher sure that every unlabelled image is 'normal' (class 2) and
    that every pixel is lesion."""
    head = model.consistency
    calls = []
    original = head.loss_module.forward

    def spy(feat_map, seg_prob, cls_attn, valid):
        calls.append(valid.clone())
        return original(feat_map, seg_prob, cls_attn, valid)

    head.loss_module.forward = spy
    teacher = model.teacher.module
    with torch.no_grad():
        teacher.cls_head.fc.weight.zero_()
        teacher.cls_head.fc.bias.copy_(torch.tensor([-20.0, -20.0, 20.0]))
        teacher.decode_head.conv_seg.weight.zero_()
        teacher.decode_head.conv_seg.bias.copy_(torch.tensor([-20.0, 20.0]))
    inputs, samples = make_batch()
    model.cutmix_prob = 0.0
    model.set_iteration(LATE)
    model.train()
    model.loss(inputs, samples)
    valid, = calls
    return valid[len(samples['sup']):]


def test_consistency_skips_views_the_teacher_calls_lesion_free():
    model = guarded_model()
    assert model.consistency.min_lesion_confidence == 0.5
    assert not bool(consistency_valid(model).any())
    # the same views count without the guard: every pixel is lesion
    model = guarded_model()
    model.consistency.min_lesion_confidence = None
    assert bool(consistency_valid(model).all())


def test_class_balanced_pixel_thresholds_see_the_labelled_masks():
    """``ClassBalancedDualThreshold`` balances against *this step's
    labelled masks*, and its thresholds move after the hook's update."""
    shipped = osp.join(osp.dirname(osp.dirname(GUARDED)),
                       'hermes_synthetic.py')
    model = _build(pseudo_labeler=Config.fromfile(shipped).model.
                   pseudo_labeler)
    policy = model.pseudo_labeler.seg_threshold
    assert type(policy).__name__ == 'ClassBalancedDualThreshold'
    inputs, samples = make_batch()
    model.set_iteration(LATE)
    model.train()
    model.loss(inputs, samples)
    masks = torch.stack([s.gt_sem_seg.data[0] for s in samples['sup']])
    pending = model.pseudo_labeler._pending['seg']
    assert pending['labelled_count'].tolist() == torch.bincount(
        masks.flatten(), minlength=2).float().tolist()
    assert pending['histogram'].sum() == pending['count'].sum()
    model.pseudo_labeler.update(iteration=LATE)
    assert torch.equal(policy.labelled_share,
                       pending['labelled_count'] /
                       pending['labelled_count'].sum())


def _gate_run(monkeypatch, gate, lesion_teacher=True):
    from .test_hermes_segmentor import (hand_threshold_loss, patch_teacher,
                                        spy)
    model = _build(lesion_share_gate=gate)
    patch_teacher(monkeypatch, model)
    if not lesion_teacher:  # a teacher that has not found the lesion
        original = model.teacher_predictions

        def no_lesion(weak_inputs, data_samples):
            out = original(weak_inputs, data_samples)
            out['seg_probs'][:, 1] = 0.02
            out['seg_probs'][:, 0] = 0.98
            return out

        monkeypatch.setattr(model, 'teacher_predictions', no_lesion)
    monkeypatch.setattr(model, 'cutmix_prob', 0.0)
    labels = spy(monkeypatch, model.pseudo_labeler, 'forward')
    batch = make_batch()
    losses = hand_threshold_loss(model, batch)
    monkeypatch.undo()
    return losses, labels[0][1], batch


def test_lesion_share_gate_scales_the_pixel_pseudo_label_loss(monkeypatch):
    """The gate multiplies exactly the pixel pseudo-label losses, with the
    value from *labelled* masks vs the teacher's reliable lesion pixels."""
    gate = dict(type='LesionShareGate', min_ratio=1.0, momentum=0.0)
    gated, pseudo, (_, samples) = _gate_run(monkeypatch, gate)
    plain, _, _ = _gate_run(monkeypatch, None)
    gt = torch.stack([s.gt_sem_seg.data[0] for s in samples['sup']])
    labelled_share = (gt == 1).float().mean()
    pseudo_share = (pseudo.masks == 1).float().mean()
    expected = float((pseudo_share / labelled_share).clamp(max=1))
    assert 0.3 < expected < 0.9  # a case where the gate is partly open
    assert float(gated['gate.lesion_share']) == pytest.approx(expected,
                                                              rel=1e-5)
    for key in ('unsup.seg.loss_ce', 'unsup.seg.loss_dice'):
        assert float(gated[key]) == pytest.approx(
            expected * float(plain[key]), rel=1e-5), key
    for key in ('sup.seg.loss_ce', 'unsup.cls.loss_cls', 'con.loss_con_pix'):
        assert float(gated[key]) == pytest.approx(float(plain[key]),
                                                  rel=1e-5), key


def test_lesion_share_gate_closes_for_a_teacher_without_lesion(monkeypatch):
    """The collapse case (issue 20): a teacher with no reliable lesion pixel
    gets no pixel pseudo-label loss at all; the labelled loss is untouched."""
    gate = dict(type='LesionShareGate', min_ratio=0.25, momentum=0.9)
    losses, pseudo, _ = _gate_run(monkeypatch, gate, lesion_teacher=False)
    assert not (pseudo.masks == 1).any()
    assert float(losses['gate.lesion_share']) == 0.0
    assert float(losses['unsup.seg.loss_ce']) == 0.0
    assert float(losses['unsup.seg.loss_dice']) == 0.0
    assert float(losses['sup.seg.loss_ce']) > 0


def test_unlabelled_scale_multiplies_every_unlabelled_group(monkeypatch):
    """``UnlabelledSafetyNetHook``'s lever: ``set_unlabelled_scale`` scales
    the pseudo-label, contrast and consistency losses, and nothing else."""
    import copy

    from .test_hermes_segmentor import hand_threshold_loss, patch_teacher
    batch = make_batch()
    plain_model = _build(lesion_share_gate=None)
    # a copy, not a second build: the first build of a session can differ
    # from later ones (lazy imports draw from the seeded generator)
    scaled_model = copy.deepcopy(plain_model)
    scaled_model.set_unlabelled_scale(0.25)
    losses = []
    for model in (plain_model, scaled_model):
        patch_teacher(monkeypatch, model)  # confident hand-made teacher
        losses.append(hand_threshold_loss(model, batch))
    plain, scaled = losses
    groups = {key.split('.')[0] for key in plain if 'loss' in key}
    assert groups == {'sup', 'unsup', 'con', 'ict'}
    for key, value in plain.items():
        if 'loss' not in key:
            continue
        factor = 1.0 if key.startswith('sup.') else 0.25
        assert float(value) != 0, key  # a zero would hide a missing factor
        assert float(scaled[key]) == pytest.approx(
            factor * float(value), rel=1e-5, abs=1e-8), key
    with pytest.raises(ValueError, match=r'in \[0, 1\], got 1.5'):
        scaled_model.set_unlabelled_scale(1.5)
