"""During the supervised warm-up, unlabelled data must not touch the student.

Guards the mechanism behind the warm-up collapse (issue 20,
``research/warmup_collapse/README.md``): when labelled images and strong
unlabelled views shared one student forward, the strong views entered the
labelled images' BN batch statistics and every BN running statistic, so
the model evaluated in eval mode (and the teacher built from its buffers)
was not the supervised model even while every unlabelled loss weight was 0.
Now, before the ramps start, one Hermes step must be *exactly* one step of
the plain supervised ``MultiTaskSegmentor`` on the same labelled images:
same gradients, same BN running statistics, whatever the strong views are.
"""
import copy

import pytest
import torch

from hermes_mm.models.segmentors.multi_task_segmentor import \
    MultiTaskOutputs
from .test_hermes_segmentor import B_L, _build, make_batch

WARMUP_ITER = 0  # every ramp in the small config starts later


def _grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters()
            if p.grad is not None}


def _bn_buffers(module):
    return {n: b.detach().clone() for n, b in module.named_buffers()
            if 'running' in n or 'num_batches' in n}


def _hermes_step(model, batch):
    model.zero_grad(set_to_none=True)
    model.set_iteration(WARMUP_ITER)
    model.train()
    torch.manual_seed(0)
    losses = model.loss(*batch)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    return _grads(model.student), _bn_buffers(model.student)


def _supervised_step(student, batch):
    student = copy.deepcopy(student)
    student.zero_grad(set_to_none=True)
    student.train()
    inputs, samples = batch
    torch.manual_seed(0)
    out = student.forward_train(inputs['sup'])
    losses = student.supervised_losses(out, samples['sup'])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return _grads(student), _bn_buffers(student)


@pytest.fixture(scope='module')
def fresh():
    model = _build()
    # Dropout draws from the global RNG, which the Hermes step also uses
    # (teacher, CutMix) before the student forward: switch it off so the
    # two steps are comparable number for number.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model


def test_warmup_step_is_the_supervised_step(fresh):
    model = copy.deepcopy(fresh)
    before = _bn_buffers(model.student)
    batch = make_batch()
    model.set_iteration(WARMUP_ITER)
    assert all(w == 0 for w in model.loss_weights().values())
    ref_grads, ref_bn = _supervised_step(model.student, batch)
    grads, bn = _hermes_step(model, batch)
    assert set(ref_grads) <= set(grads)
    for name, ref in ref_grads.items():
        torch.testing.assert_close(grads[name], ref, rtol=1e-5, atol=1e-7,
                                   msg=lambda m: f'{name}: {m}')
    # parameters only the unlabelled terms use get exactly zero gradient
    for name in set(grads) - set(ref_grads):
        assert not grads[name].any(), name
    for name, ref in ref_bn.items():
        assert torch.equal(bn[name], ref), name
    assert any(not torch.equal(before[n], bn[n]) for n in bn
               if 'running_mean' in n)


def test_strong_views_cannot_move_the_supervised_path(fresh):
    """Two batches with the same labelled images and wildly different
    strong views give the same student gradients and BN statistics."""
    model = copy.deepcopy(fresh)
    batch = make_batch(seed=0)
    other = make_batch(seed=0)
    other[0]['unsup_strong'] = 25.0 * torch.randn_like(
        other[0]['unsup_strong']) + 7.0
    grads_a, bn_a = _hermes_step(copy.deepcopy(model), batch)
    grads_b, bn_b = _hermes_step(copy.deepcopy(model), other)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5,
                                   atol=1e-7, msg=lambda m: f'{name}: {m}')
    for name in bn_a:
        assert torch.equal(bn_a[name], bn_b[name]), name


def test_strong_views_still_use_their_own_batch_statistics(fresh):
    """The strong forward runs in train mode (batch statistics, gradients);
    only the running statistics are kept."""
    model = copy.deepcopy(fresh)
    calls = []
    original = model.student.forward_train

    def spy(x):
        out = original(x)
        calls.append((x, out))
        return out

    model.student.forward_train = spy
    batch = make_batch()
    _hermes_step(model, batch)
    (sup_x, _), (strong_x, strong_out) = calls
    assert torch.equal(sup_x, batch[0]['sup'])
    assert strong_x.shape[0] == batch[0]['unsup_strong'].shape[0]
    assert strong_out.cls_logits.requires_grad
    del model.student.forward_train


def test_joint_forward_is_still_available_and_differs(fresh):
    """The old behaviour stays selectable and is the one the guard above
    rejects (so the guard can fail)."""
    model = copy.deepcopy(fresh)
    model.joint_student_forward = True
    batch = make_batch()
    ref_grads, ref_bn = _supervised_step(model.student, batch)
    grads, bn = _hermes_step(model, batch)
    assert any(not torch.equal(bn[n], ref_bn[n]) for n in ref_bn
               if 'running_mean' in n)
    assert any(not torch.allclose(grads[n], ref_grads[n], rtol=1e-4,
                                  atol=1e-6) for n in ref_grads)


def test_outputs_cat_inverts_slice(fresh):
    model = copy.deepcopy(fresh).eval()
    x = make_batch()[0]['sup']
    with torch.no_grad():
        out = model.student.forward_train(torch.cat([x, x.flip(0)]))
    joined = MultiTaskOutputs.cat(out.slice(0, B_L),
                                  out.slice(B_L, 2 * B_L))
    assert torch.equal(joined.seg_logits, out.seg_logits)
    assert torch.equal(joined.cls_logits, out.cls_logits)
    for a, b in zip(joined.task_feats.seg_feats, out.task_feats.seg_feats):
        assert torch.equal(a, b)
    assert torch.equal(joined.task_feats.cls_attn, out.task_feats.cls_attn)


def test_single_image_bn_batch_is_a_clear_error(fresh):
    """One labelled or one unlabelled image per step makes a 1-image BN
    batch, which UPerHead's 1x1 pooling branch cannot normalise in train
    mode: the error names the per-batch settings and the ways out."""
    model = copy.deepcopy(fresh)
    inputs, samples = make_batch()
    inputs = {k: v[:1] for k, v in inputs.items()}
    samples = {k: v[:1] for k, v in samples.items()}
    model.set_iteration(WARMUP_ITER)
    model.train()
    with pytest.raises(ValueError, match='unlabeled_per_batch') as err:
        model.loss(inputs, samples)
    assert 'joint_student_forward=True' in str(err.value)
    model.joint_student_forward = True  # 2 images in one BN batch: fine
    losses = model.loss(inputs, samples)
    assert torch.isfinite(losses['sup.seg.loss_ce'])
