"""DistributionAlignment: class-balanced image pseudo-labels."""
import pytest
import torch

from hermes_mm.registry import MODELS


def build(**kwargs):
    cfg = dict(type='DistributionAlignment', num_classes=3, momentum=0.5)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_aligns_teacher_mean_to_labelled_frequencies():
    align = build()
    # The teacher leans to class 0; the labelled images are balanced.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1],
                          [0.6, 0.1, 0.3], [0.9, 0.05, 0.05]])
    labels = torch.tensor([0, 1, 2])
    aligned = align(probs, labels)
    torch.testing.assert_close(aligned.sum(dim=1), torch.ones(4))
    # p~ = p * (1/3) / mean(p), renormalised: the majority class shrinks.
    ratio = torch.full((3, ), 1 / 3) / probs.mean(dim=0)
    expected = probs * ratio
    expected = expected / expected.sum(dim=1, keepdim=True)
    torch.testing.assert_close(aligned, expected)
    assert bool((aligned[:, 0] < probs[:, 0]).all())
    assert bool((aligned[:, 1:] >= probs[:, 1:]).all())


def test_running_means_and_unknown_labels():
    align = build()
    first = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    align(first, torch.tensor([0, 0]))
    torch.testing.assert_close(align.model_prior, torch.tensor([1., 0, 0]))
    torch.testing.assert_close(align.target_prior, torch.tensor([1., 0, 0]))
    # momentum 0.5; a label of -1 (unknown) is not counted.
    second = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    align(second, torch.tensor([2, -1]))
    torch.testing.assert_close(align.model_prior,
                               torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(align.target_prior,
                               torch.tensor([0.5, 0.0, 0.5]))


def test_eval_mode_does_not_update_and_fixed_target():
    align = build(target=[2, 1, 1])
    torch.testing.assert_close(align.target_prior,
                               torch.tensor([0.5, 0.25, 0.25]))
    probs = torch.tensor([[0.2, 0.3, 0.5]])
    align(probs, torch.tensor([1]))
    # a fixed target ignores the labels
    torch.testing.assert_close(align.target_prior,
                               torch.tensor([0.5, 0.25, 0.25]))
    before = align.model_prior.clone()
    align.eval()
    align(torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(align.model_prior, before)


@pytest.mark.parametrize('kwargs', [
    dict(momentum=1.0), dict(target=[1, 1]), dict(target=[-1, 1, 1]),
    dict(eps=0)
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        build(**kwargs)


def test_pseudo_labeller_applies_it_before_the_zones(build_labeller):
    seg = torch.full((2, 2, 4, 4), 0.5)
    region = torch.ones(2, 4, 4, dtype=torch.bool)
    mixed = torch.zeros(2, dtype=torch.bool)
    # Both images lean to class 0; labelled images are all class 2.
    cls = torch.tensor([[0.65, 0.05, 0.30], [0.62, 0.08, 0.30]])
    assert build_labeller()(seg, cls, region,
                            mixed).cls_zones.pseudo_label.tolist() == [0, 0]
    aligned = build_labeller(
        cls_alignment=dict(type='DistributionAlignment'))
    pseudo = aligned(seg, cls, region, mixed,
                     labelled_labels=torch.tensor([2, 2]))
    assert pseudo.cls_zones.pseudo_label.tolist() == [2, 2]
    torch.testing.assert_close(pseudo.cls_probs.sum(dim=1), torch.ones(2))
