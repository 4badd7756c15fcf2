"""What a Hermes step is during the supervised warm-up, for both student
forwards.

Issue 20 first found a warm-up collapse on the ``crowded`` style when the
labelled images and the strong unlabelled views shared one student forward
(``research/warmup_collapse/README.md``), and made two forwards the
default. Its pre-registered 2400-iteration test then adopted the joint
forward again (amendment 26 stage 2 of
``benchmarks/results/PREREGISTRATION_styles.md``: more lesion Dice and
accuracy on the development styles, and no harm against the supervised
twin). Amendment 28 fixes what these tests pin:

* **default, one joint forward:** before the ramps start, a Hermes step is
  *exactly* the supervised step of the joint batch: one forward over the
  labelled images and the strong views (BN batch and running statistics
  from both), supervised losses on the labelled slice only. No pseudo-label
  or unlabelled loss reaches a gradient; the strong views reach the model
  through BN only, and they must be the strong views (not the weak ones).
* **two forwards** (``joint_student_forward=False``, the supervised twin
  ``hermes_unlabelled_off``'s path): the step is exactly the plain
  supervised step on the labelled images, whatever the strong views hold.
"""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope

from hermes_mm.models.segmentors.multi_task_segmentor import \
    MultiTaskOutputs
from hermes_mm.registry import MODELS
from .test_hermes_segmentor import B_L, _build, _model_cfg, make_batch

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


def _supervised_step(student, batch, with_strong_views):
    """One step of the plain supervised ``MultiTaskSegmentor``: on the
    labelled images alone, or (``with_strong_views``) on the labelled images
    and the strong views in one forward, losses on the labelled slice."""
    student = copy.deepcopy(student)
    student.zero_grad(set_to_none=True)
    student.train()
    inputs, samples = batch
    x = inputs['sup']
    if with_strong_views:
        x = torch.cat([x, inputs['unsup_strong']])
    torch.manual_seed(0)
    out = student.forward_train(x).slice(0, B_L)
    losses = student.supervised_losses(out, samples['sup'])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return _grads(student), _bn_buffers(student)


@pytest.fixture(scope='module')
def fresh():
    model = _build()
    # Dropout draws from the global RNG, which the Hermes step also uses
    # (teacher, CutMix) before the student forward: switch it off so the
    # steps are comparable number for number. No CutMix either, so the
    # student's strong views are the batch's.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    model.cutmix_prob = 0.0
    return model


def _separate(model):
    model = copy.deepcopy(model)
    model.joint_student_forward = False
    return model


def _assert_same_step(step, ref):
    (grads, bn), (ref_grads, ref_bn) = step, ref
    assert set(ref_grads) <= set(grads)
    for name, expected in ref_grads.items():
        torch.testing.assert_close(grads[name], expected, rtol=1e-5,
                                   atol=1e-7, msg=lambda m: f'{name}: {m}')
    # parameters only the unlabelled terms use get exactly zero gradient
    for name in set(grads) - set(ref_grads):
        assert not grads[name].any(), name
    for name, expected in ref_bn.items():
        assert torch.equal(bn[name], expected), name


def _bn_differs(a, b):
    return any(not torch.equal(a[n], b[n]) for n in a if 'running_mean' in n)


def test_default_is_the_joint_forward(fresh):
    """The shipped config and the class both default to the joint forward
    (a config that leaves the switch out gets it too)."""
    assert fresh.joint_student_forward is True
    cfg = _model_cfg()
    cfg.pop('joint_student_forward')
    init_default_scope('mmseg')
    assert MODELS.build(cfg).joint_student_forward is True


def test_warmup_step_is_the_joint_supervised_step(fresh):
    """Default: same gradients and BN buffers as the supervised step over
    labelled images + strong views, losses on the labelled slice."""
    model = copy.deepcopy(fresh)
    before = _bn_buffers(model.student)
    batch = make_batch()
    model.set_iteration(WARMUP_ITER)
    assert all(w == 0 for w in model.loss_weights().values())
    ref = _supervised_step(model.student, batch, with_strong_views=True)
    step = _hermes_step(model, batch)
    _assert_same_step(step, ref)
    assert _bn_differs(before, step[1])
    # and it is not the labelled-only step: the strong views are in BN
    alone = _supervised_step(fresh.student, batch, with_strong_views=False)
    assert _bn_differs(step[1], alone[1])


def test_joint_warmup_forwards_the_strong_views_not_the_weak(fresh):
    """The joint batch holds the strong views: a step whose strong views
    equal the weak ones is a different step (a wiring slip that fed the
    weak views to the student would pass the test above only by chance)."""
    batch = make_batch()
    weak_as_strong = make_batch()
    weak_as_strong[0]['unsup_strong'] = weak_as_strong[0]['unsup_weak']
    _, bn_a = _hermes_step(copy.deepcopy(fresh), batch)
    _, bn_b = _hermes_step(copy.deepcopy(fresh), weak_as_strong)
    assert _bn_differs(bn_a, bn_b)
    calls = []
    model = copy.deepcopy(fresh)
    original = model.student.forward_train

    def spy(x):
        calls.append(x)
        return original(x)

    model.student.forward_train = spy
    _hermes_step(model, batch)
    assert len(calls) == 1
    torch.testing.assert_close(
        calls[0], torch.cat([batch[0]['sup'], batch[0]['unsup_strong']]))


def test_separate_forward_warmup_step_is_the_supervised_step(fresh):
    """The twin's path: exactly the labelled-only supervised step."""
    model = _separate(fresh)
    before = _bn_buffers(model.student)
    batch = make_batch()
    ref = _supervised_step(model.student, batch, with_strong_views=False)
    step = _hermes_step(model, batch)
    _assert_same_step(step, ref)
    assert _bn_differs(before, step[1])


def test_separate_forward_strong_views_cannot_move_the_supervised_path(
        fresh):
    """Two forwards: the same labelled images with wildly different strong
    views give the same student gradients and BN statistics; with the
    joint forward they do not (so this guard can fail)."""
    batch = make_batch(seed=0)
    other = make_batch(seed=0)
    other[0]['unsup_strong'] = 25.0 * torch.randn_like(
        other[0]['unsup_strong']) + 7.0
    grads_a, bn_a = _hermes_step(_separate(fresh), batch)
    grads_b, bn_b = _hermes_step(_separate(fresh), other)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5,
                                   atol=1e-7, msg=lambda m: f'{name}: {m}')
    for name in bn_a:
        assert torch.equal(bn_a[name], bn_b[name]), name
    _, joint_a = _hermes_step(copy.deepcopy(fresh), batch)
    _, joint_b = _hermes_step(copy.deepcopy(fresh), other)
    assert _bn_differs(joint_a, joint_b)


def test_separate_forward_strong_views_use_their_own_batch_statistics(
        fresh):
    """Two forwards: the strong forward runs in train mode (batch
    statistics, gradients); only the running statistics are kept."""
    model = _separate(fresh)
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
    assert torch.equal(strong_x, batch[0]['unsup_strong'])
    assert strong_out.cls_logits.requires_grad


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
    """Two forwards with one labelled or one unlabelled image per step make
    a 1-image BN batch, which UPerHead's 1x1 pooling branch cannot
    normalise in train mode: the error names the per-batch settings and the
    ways out. The joint forward (default) has 2 images in one BN batch."""
    model = _separate(fresh)
    inputs, samples = make_batch()
    inputs = {k: v[:1] for k, v in inputs.items()}
    samples = {k: v[:1] for k, v in samples.items()}
    model.set_iteration(WARMUP_ITER)
    model.train()
    with pytest.raises(ValueError, match='unlabeled_per_batch') as err:
        model.loss(inputs, samples)
    assert 'joint_student_forward=True' in str(err.value)
    model.joint_student_forward = True
    losses = model.loss(inputs, samples)
    assert torch.isfinite(losses['sup.seg.loss_ce'])
