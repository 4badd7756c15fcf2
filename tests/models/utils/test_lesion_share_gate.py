"""Tests of the all-background pseudo-label guard (``LesionShareGate``) and
its wiring into HermesSegmentor's pixel pseudo-label loss."""
import copy

import pytest
import torch

from hermes_mm.models.utils import LesionShareGate, lesion_share_gate

IGNORE = 255


def test_gate_closed_form():
    share = torch.tensor
    assert float(lesion_share_gate(share(0.2), share(0.0), 0.25)) == 0.0
    assert float(lesion_share_gate(share(0.2), share(0.025), 0.25)) == \
        pytest.approx(0.5)
    assert float(lesion_share_gate(share(0.2), share(0.3), 0.25)) == 1.0
    # no lesion in the labelled images: nothing to compare with
    assert float(lesion_share_gate(share(0.0), share(0.0), 0.25)) == 1.0


def test_running_shares_and_first_update():
    gate = LesionShareGate(min_ratio=0.5, momentum=0.5)
    gt = torch.zeros(1, 2, 4, dtype=torch.long)
    gt[0, 0] = 1  # half lesion
    gt[0, 1, 0] = IGNORE  # ignored pixel not counted: 4 / 7
    pseudo = torch.full((1, 2, 4), IGNORE)
    pseudo[0, 0, :1] = 1  # 1 of 8 region pixels reliable lesion
    region = torch.ones(1, 2, 4, dtype=torch.bool)
    g = gate(gt, pseudo, region, lesion_index=1, ignore_index=IGNORE)
    assert float(gate.labelled_share) == pytest.approx(4 / 7)
    assert float(gate.pseudo_share) == pytest.approx(1 / 8)
    assert float(g) == pytest.approx((1 / 8) / (0.5 * 4 / 7))
    # second update: EMA with momentum 0.5, pseudo share now 0
    g = gate(gt, torch.full((1, 2, 4), IGNORE), region, 1, IGNORE)
    assert float(gate.pseudo_share) == pytest.approx(1 / 16)
    assert float(g) == pytest.approx((1 / 16) / (0.5 * 4 / 7))
    # the state is in the checkpoint
    assert {'labelled_share', 'pseudo_share',
            'initialised'} <= set(gate.state_dict())


@pytest.mark.parametrize('kwargs', [dict(min_ratio=0), dict(min_ratio=1.5),
                                    dict(momentum=1.0)])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LesionShareGate(**kwargs)


def test_segmentor_drops_pixel_pseudo_labels_of_a_teacher_without_lesion(
        monkeypatch):
    """A teacher that calls every unlabelled pixel reliable background,
    while the labelled images have lesions: with the gate the pixel
    pseudo-label loss is 0 (and the image one untouched); without it the
    student is trained towards "no lesion"."""
    from tests.models.segmentors.test_hermes_segmentor import (LATE, _build,
                                                               make_batch)
    model = _build(cutmix_prob=0.0, lesion_share_gate=None)
    original = model.teacher_predictions

    def no_lesion_teacher(weak_inputs, data_samples):
        out = original(weak_inputs, data_samples)
        probs = torch.zeros_like(out['seg_probs'])
        probs[:, 0] = 1.0  # background, fully confident
        out['seg_probs'] = probs
        return out

    monkeypatch.setattr(model, 'teacher_predictions', no_lesion_teacher)
    batch = make_batch()
    model.set_iteration(LATE)
    model.train()
    with torch.no_grad():
        plain = model.loss(*batch)
    gated = copy.deepcopy(model)
    gated.lesion_share_gate = LesionShareGate(min_ratio=0.25)
    monkeypatch.setattr(gated, 'teacher_predictions', no_lesion_teacher)
    with torch.no_grad():
        losses = gated.loss(*batch)
    assert float(plain['unsup.seg.loss_ce']) > 0
    assert float(losses['gate.lesion_share']) == 0.0
    assert float(losses['unsup.seg.loss_ce']) == 0.0
    assert float(losses['unsup.seg.loss_dice']) == 0.0
    assert torch.allclose(losses['unsup.cls.loss_cls'],
                          plain['unsup.cls.loss_cls'])
    assert 'gate.lesion_share' not in plain
