"""ForeachExponentialMovingAverage == MMEngine's ExponentialMovingAverage,
and step_teacher (warm-up copy, avg_parameters refresh, EMA step) for
either averaged model type."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

from hermes_mm.models.utils import step_teacher
from hermes_mm.models.utils.teacher_ema import ForeachExponentialMovingAverage

EMA_TYPES = [ExponentialMovingAverage, ForeachExponentialMovingAverage]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize('update_buffers', [True, False])
@pytest.mark.parametrize('interval', [1, 2])
def test_same_state_as_mmengine_ema(update_buffers, interval):
    source = _net()
    reference = ExponentialMovingAverage(
        source, momentum=0.3, interval=interval,
        update_buffers=update_buffers)
    fused = ForeachExponentialMovingAverage(
        copy.deepcopy(source), momentum=0.3, interval=interval,
        update_buffers=update_buffers)
    fused.module.load_state_dict(reference.module.state_dict())
    for step in range(5):
        with torch.no_grad():
            for p in source.parameters():
                p.add_(torch.randn_like(p))
        source.train()
        source(torch.randn(2, 3, 8, 8))  # moves BN running statistics
        reference.update_parameters(source)
        fused.update_parameters(source)
    assert int(fused.steps) == int(reference.steps) == 5
    ref_state = reference.state_dict()
    for key, value in fused.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], msg=key)
    # non-vacuous: the average differs from the source
    assert not torch.allclose(fused.module[0].weight, source[0].weight)


def test_first_update_copies_the_source():
    source = _net()
    fused = ForeachExponentialMovingAverage(copy.deepcopy(source),
                                            momentum=0.1)
    with torch.no_grad():
        for p in source.parameters():
            p.mul_(3)
    fused.update_parameters(source)
    torch.testing.assert_close(fused.module[0].weight, source[0].weight)


def _train_step(net, scale=1.0):
    """Stand-in for an optimiser step: move every parameter and, through a
    train-mode forward, the BN running statistics."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
        net.train()
        net(torch.randn(2, 3, 8, 8))


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def _assert_ema_step(teacher, before, student, momentum, update_buffers):
    """The teacher is one EMA step from ``before`` towards ``student``:
    floating-point parameters (and buffers with ``update_buffers``) are
    lerped; with ``update_buffers`` integer buffers (``num_batches_tracked``)
    are left alone, without it every buffer is the student's."""
    params = dict(student.named_parameters())
    source = student.state_dict()
    for key, value in teacher.module.state_dict().items():
        averaged = value.dtype.is_floating_point and (
            update_buffers or key in params)
        if averaged:
            want = (1 - momentum) * before[key] + momentum * source[key]
            # non-vacuous: neither the old teacher nor the student
            assert not torch.allclose(want, source[key]), key
            assert not torch.allclose(want, before[key]), key
        elif update_buffers:
            want = before[key]
        else:
            want = source[key]
        torch.testing.assert_close(value, want, msg=key)


@pytest.mark.parametrize('update_buffers', [True, False])
@pytest.mark.parametrize('ema_type', EMA_TYPES)
def test_step_teacher_warmup_copy_then_ema(ema_type, update_buffers):
    """Whatever the EMA type, the teacher is the student's exact copy
    during the warm-up and one EMA step per call afterwards."""
    torch.manual_seed(1)
    student = _net()
    teacher = ema_type(student, momentum=0.25,
                       update_buffers=update_buffers)
    warmup = 3
    for iteration in range(warmup):
        _train_step(student)
        step_teacher(teacher, student, iteration, warmup)
        teacher_state = teacher.module.state_dict()
        for key, value in student.state_dict().items():
            assert torch.equal(teacher_state[key], value), (iteration, key)
        assert int(teacher.steps) == iteration + 1
    for iteration in (warmup, warmup + 1):
        before = _state(teacher.module)
        _train_step(student)
        step_teacher(teacher, student, iteration, warmup)
        _assert_ema_step(teacher, before, student, 0.25, update_buffers)
    assert int(teacher.steps) == warmup + 2
    # iteration None: "after the warm-up", an EMA step
    before = _state(teacher.module)
    _train_step(student)
    step_teacher(teacher, student, None, warmup)
    _assert_ema_step(teacher, before, student, 0.25, update_buffers)


@pytest.mark.parametrize('stale_by', ['load_assign', 'replace', 'deepcopy'])
@pytest.mark.parametrize('ema_type', EMA_TYPES)
def test_step_teacher_refreshes_stale_avg_parameters(ema_type, stale_by):
    """``avg_parameters`` holds views on the teacher's tensors taken at
    build time; once those tensors are replaced the dict is stale and a
    plain ``update_parameters`` would average tensors nobody reads.
    ``step_teacher`` refreshes it, so the teacher really moves."""
    torch.manual_seed(2)
    student = _net()
    teacher = ema_type(student, momentum=0.25, update_buffers=True)
    step_teacher(teacher, student, 0, 1)  # warm-up copy
    fresh = {k: v.clone() + 1 if v.dtype.is_floating_point else v.clone()
             for k, v in teacher.module.state_dict().items()}
    if stale_by == 'load_assign':
        teacher.module.load_state_dict(fresh, assign=True)
    elif stale_by == 'replace':
        with torch.no_grad():
            teacher.module[0].weight = nn.Parameter(
                fresh['0.weight'], requires_grad=False)
            teacher.module[1].running_mean = fresh['1.running_mean']
    else:
        teacher = copy.deepcopy(teacher)
    current = teacher.module.state_dict()
    stale = [key for key, value in teacher.avg_parameters.items()
             if value.data_ptr() != current[key].data_ptr()]
    assert stale, 'the set-up did not make avg_parameters stale'
    before = _state(teacher.module)
    _train_step(student)
    step_teacher(teacher, student, 5, 1)
    _assert_ema_step(teacher, before, student, 0.25, update_buffers=True)
    current = teacher.module.state_dict()
    assert all(teacher.avg_parameters[key].data_ptr() == value.data_ptr()
               for key, value in current.items())
