"""``HermesSegmentor(unmixed_image_view=True)`` (issue 20): a CutMixed
image keeps its image-level signal through the student's output on the same
strong view before the paste. Checked on the wiring: which view the student
classifies, which logits meet the image pseudo-label, which embeddings the
image contrast sees, and that the dense (pixel) terms keep the mixed views.
"""
import pytest
import torch
import torch.nn.functional as F

from hermes_mm.models.necks.task_features import TaskFeatures
from hermes_mm.models.segmentors.multi_task_segmentor import MultiTaskOutputs
from .test_hermes_segmentor import (B_L, B_U, _build, hand_threshold_loss,
                                    make_batch, patch_teacher, spy)


@pytest.fixture(scope='module')
def model():
    return _build(unmixed_image_view=True)


def _run(model, monkeypatch, cutmix_prob):
    batch = make_batch()
    patch_teacher(monkeypatch, model)
    monkeypatch.setattr(model, 'cutmix_prob', cutmix_prob)
    # student_forward gets (labelled, strong views) whether the student
    # forwards them jointly (default) or separately
    forwards = spy(monkeypatch, model, 'student_forward')
    seg_calls = spy(monkeypatch, model.student, 'seg_losses')
    contrast = spy(monkeypatch, model.img_contrast, 'loss')
    selections = spy(monkeypatch, model.pseudo_labeler, 'forward')
    losses = hand_threshold_loss(model, batch)
    return batch, losses, forwards, seg_calls, contrast, selections


def test_mixed_images_are_classified_on_their_unmixed_strong_view(
        model, monkeypatch):
    batch, losses, forwards, seg_calls, contrast, selections = _run(
        model, monkeypatch, cutmix_prob=1.0)
    strong = batch[0]['unsup_strong']
    # labelled images; mixed views followed by the unmixed views
    ((sup_x, views), (_, unsup_out)), = forwards
    assert sup_x.shape[0] == B_L
    assert views.shape[0] == 2 * B_U
    assert not torch.equal(views[:B_U], strong)  # every view was mixed
    assert torch.equal(views[B_U:], strong)  # the same views, unpasted
    (_, pseudo), = selections
    assert pseudo.mixed.tolist() == [True, True]
    assert pseudo.cls_usable.tolist() == [True, True]
    assert pseudo.cls_reliable.tolist() == [True, False]
    assert float(losses['zone.cls.usable']) == 1.0
    # image 0 is reliable class 0 (HAND_CLS): its loss is on the unmixed
    # view's logits, averaged over both unlabelled images
    plain_logits = unsup_out.cls_logits[B_U:]
    expected = F.cross_entropy(plain_logits[:1], torch.tensor([0])) / B_U
    assert torch.allclose(losses['unsup.cls.loss_cls'], expected, atol=1e-6)
    mixed_ce = F.cross_entropy(unsup_out.cls_logits[:1],
                               torch.tensor([0])) / B_U
    assert not torch.allclose(mixed_ce, expected, atol=1e-4)
    # image contrast: labelled vectors, then the unmixed views' vectors
    (contrast_args, _), = contrast
    cls_vec = contrast_args[0]
    assert cls_vec.shape[0] == B_L + B_U
    assert torch.equal(cls_vec[B_L:], unsup_out.task_feats.cls_vec[B_U:])
    # dense terms stay on the mixed views
    (_, _), (unsup_seg_args, _) = seg_calls
    assert torch.equal(unsup_seg_args[0], unsup_out.seg_logits[:B_U])


def test_unmixed_images_need_no_extra_forward(model, monkeypatch):
    batch, losses, forwards, _, contrast, _ = _run(model, monkeypatch,
                                                   cutmix_prob=0.0)
    ((_, views), (_, unsup_out)), = forwards
    assert torch.equal(views, batch[0]['unsup_strong'])
    expected = F.cross_entropy(unsup_out.cls_logits[:1],
                               torch.tensor([0])) / B_U
    assert torch.allclose(losses['unsup.cls.loss_cls'], expected, atol=1e-6)
    (contrast_args, _), = contrast
    assert torch.equal(contrast_args[0][B_L:], unsup_out.task_feats.cls_vec)


def test_off_by_default_mixed_images_have_no_image_signal(monkeypatch):
    model = _build()
    assert model.unmixed_image_view is False
    _, losses, forwards, _, _, selections = _run(model, monkeypatch,
                                                 cutmix_prob=1.0)
    ((_, views), _), = forwards
    assert views.shape[0] == B_U  # no extra view
    (_, pseudo), = selections
    assert pseudo.cls_usable.tolist() == [False, False]
    assert float(losses['unsup.cls.loss_cls']) == 0.0
    assert float(losses['zone.cls.usable']) == 0.0


def test_consistency_keeps_to_unmixed_views(build_labeller):
    """The consistency term compares one view's maps, so a mixed view stays
    out of it even when its image label is usable."""
    from hermes_mm.registry import MODELS
    head = MODELS.build(
        dict(type='InterTaskConsistencyHead',
             loss=dict(type='InterTaskConsistencyLoss'),
             lesion_classes=[1, 2], min_lesion_confidence=0.5))
    labeller = build_labeller()
    seg = torch.rand(2, 2, 8, 8).softmax(dim=1)
    pseudo = labeller(seg_probs=seg,
                      cls_probs=torch.tensor([[0.1, 0.8, 0.1],
                                              [0.1, 0.8, 0.1]]),
                      region=torch.ones(2, 8, 8, dtype=torch.bool),
                      mixed=torch.tensor([True, False]))
    pseudo.unmixed_image_views = True
    assert pseudo.cls_usable.tolist() == [True, True]
    assert head.confident_lesion_images(pseudo).tolist() == [False, True]


def _outputs(batch, value):
    feats = TaskFeatures(seg_feats=(torch.full((batch, 2, 4, 4), value), ),
                         cls_map=torch.full((batch, 2, 4, 4), value),
                         cls_vec=torch.full((batch, 5), value,
                                            requires_grad=True))
    return MultiTaskOutputs(task_feats=feats,
                            seg_logits=torch.full((batch, 2, 4, 4), value),
                            cls_logits=torch.full((batch, 3), value,
                                                  requires_grad=True))


def test_with_image_level_replaces_rows_in_order_with_gradients():
    base, other = _outputs(4, 0.0), _outputs(2, 1.0)
    other.cls_logits.data[1] = 2.0
    rows = torch.tensor([False, True, False, True])
    out = base.with_image_level(rows, other)
    assert out.cls_logits[:, 0].tolist() == [0.0, 1.0, 0.0, 2.0]
    assert out.task_feats.cls_vec[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert out.seg_logits is base.seg_logits
    assert out.task_feats.cls_map is base.task_feats.cls_map
    (out.cls_logits.sum() + out.task_feats.cls_vec.sum()).backward()
    assert base.cls_logits.grad[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert other.cls_logits.grad[:, 0].tolist() == [1.0, 1.0]
    assert other.task_feats.cls_vec.grad is not None
    with pytest.raises(ValueError, match='3 rows to replace but 2'):
        base.with_image_level(torch.tensor([True, True, True, False]), other)
