"""Tests of the mmcv-lite fallback ops (:mod:`hermes_mm.compat.mmcv_ops`)."""
import math
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.nn.functional as F

import hermes_mm  # noqa: F401  (applies compat)
from hermes_mm import compat
from hermes_mm.compat import mmcv_ops

FALLBACK_ACTIVE = not mmcv_ops.compiled_ops_available()
needs_fallback = pytest.mark.skipif(
    not FALLBACK_ACTIVE, reason='a full mmcv with compiled ops is installed')


def _reference_focal(logits, target, gamma, alpha, weight=None):
    """Element-wise focal loss written out with ``math`` (mmcv's kernel)."""
    rows = []
    for i, row in enumerate(logits.tolist()):
        t = int(target[i])
        out = []
        for c, x in enumerate(row):
            p = 1.0 / (1.0 + math.exp(-x))
            if t == c:
                value = -alpha * (1 - p)**gamma * math.log(p)
            else:
                value = -(1 - alpha) * p**gamma * math.log(1 - p)
            if weight is not None and t < len(row):
                value *= float(weight[t])
            out.append(value)
        rows.append(out)
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------- install
@needs_fallback
def test_fallback_installed_on_mmcv_lite():
    import mmcv
    import mmcv.ops
    module = sys.modules['mmcv.ops']
    assert isinstance(module, mmcv_ops._FallbackOpsModule)
    assert mmcv.ops is module
    assert getattr(module, 'HERMES_FALLBACK', False)
    assert module.point_sample is mmcv_ops.point_sample
    assert module.sigmoid_focal_loss is mmcv_ops.sigmoid_focal_loss
    assert sorted(dir(module)) == ['point_sample', 'sigmoid_focal_loss']


@needs_fallback
def test_other_op_raises_module_not_found_with_hint():
    with pytest.raises(ModuleNotFoundError) as info:
        from mmcv.ops import RoIAlign  # noqa: F401
    message = str(info.value)
    assert 'RoIAlign' in message
    assert 'full mmcv' in message and 'mmcv-lite' in message
    assert info.value.name == 'mmcv.ops.RoIAlign'
    # Dunder look-ups stay plain AttributeErrors (hasattr, inspect, pickle).
    assert not hasattr(sys.modules['mmcv.ops'], '__path__')


@needs_fallback
def test_mmseg_guarded_imports_still_work():
    import mmseg.models  # noqa: F401
    from mmseg.models.decode_heads import cc_head, psa_head

    # MMSeg's try/except ModuleNotFoundError guards caught the missing ops.
    assert psa_head.PSAMask is None
    assert cc_head.CrissCrossAttention is None


def test_install_does_not_shadow_existing_module(monkeypatch):
    sentinel = types.ModuleType('mmcv.ops')
    monkeypatch.setitem(sys.modules, 'mmcv.ops', sentinel)
    assert mmcv_ops.install() is False
    assert sys.modules['mmcv.ops'] is sentinel


def test_install_skipped_when_compiled_ext_is_importable(monkeypatch,
                                                         tmp_path):
    """A findable ``mmcv._ext`` (here a fake file on mmcv's package path)
    means a full mmcv: nothing may be installed."""
    import mmcv
    (tmp_path / '_ext.py').write_text('# fake compiled extension\n')
    monkeypatch.setattr(mmcv, '__path__', list(mmcv.__path__) +
                        [str(tmp_path)])
    monkeypatch.delitem(sys.modules, 'mmcv.ops', raising=False)
    assert mmcv_ops.compiled_ops_available() is True
    assert mmcv_ops.install() is False
    assert 'mmcv.ops' not in sys.modules


def test_fresh_process_with_real_ops_module_is_not_shadowed():
    """``import hermes_mm`` in a clean interpreter that already holds an
    ``mmcv.ops`` (as a full mmcv would) keeps that module."""
    script = textwrap.dedent("""
        import sys, types
        import mmcv

        class FullOps(types.ModuleType):
            # Stands in for a compiled mmcv.ops: every op name resolves.
            def __getattr__(self, name):
                if name.startswith('__'):
                    raise AttributeError(name)
                return type(name, (), {})

        real = FullOps('mmcv.ops')
        real.REAL = True
        sys.modules['mmcv.ops'] = real
        mmcv.ops = real
        import hermes_mm
        from hermes_mm.compat import mmcv_ops
        assert mmcv_ops.install() is False
        assert sys.modules['mmcv.ops'] is real, sys.modules['mmcv.ops']
        assert mmcv.ops is real
        from mmcv.ops import REAL, point_sample  # noqa
        assert not isinstance(point_sample, types.FunctionType)
        print('NOT_SHADOWED')
    """)
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'NOT_SHADOWED' in proc.stdout


def test_apply_is_idempotent():
    before_module = sys.modules.get('mmcv.ops')
    before_globals = list(torch.serialization.get_safe_globals())
    compat.apply()
    compat.apply()
    assert sys.modules.get('mmcv.ops') is before_module
    assert len(torch.serialization.get_safe_globals()) == len(before_globals)
    if FALLBACK_ACTIVE:
        # A repeated install keeps the same module object.
        assert mmcv_ops.install() is True
        assert sys.modules['mmcv.ops'] is before_module


# ----------------------------------------------------------- point_sample
@pytest.mark.parametrize('align_corners', [False, True])
def test_point_sample_matches_grid_sample_npx2(align_corners):
    import mmcv.ops
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 5, 7, generator=gen)
    points = torch.rand(2, 11, 2, generator=gen)
    out = mmcv.ops.point_sample(feats, points, align_corners=align_corners)
    expected = F.grid_sample(
        feats, 2 * points.unsqueeze(2) - 1,
        align_corners=align_corners).squeeze(3)
    assert out.shape == (2, 3, 11)
    torch.testing.assert_close(out, expected)


def test_point_sample_matches_grid_sample_nhw2():
    import mmcv.ops
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 4, 6, 6, generator=gen)
    grid = torch.rand(2, 3, 5, 2, generator=gen)
    out = mmcv.ops.point_sample(feats, grid)
    assert out.shape == (2, 4, 3, 5)
    torch.testing.assert_close(
        out, F.grid_sample(feats, 2 * grid - 1, align_corners=False))


def test_point_sample_corner_values():
    """Point (0, 0) with align_corners=True reads the top-left pixel, (1, 1)
    the bottom-right one; x is the first coordinate."""
    feats = torch.arange(12.).view(1, 1, 3, 4)
    points = torch.tensor([[[0., 0.], [1., 1.], [1., 0.]]])
    out = mmcv_ops.point_sample(feats, points, align_corners=True)
    torch.testing.assert_close(out, torch.tensor([[[0., 11., 3.]]]))


# ----------------------------------------------------- sigmoid_focal_loss
GAMMA, ALPHA = 2.0, 0.25


def test_focal_closed_form_at_zero_logits():
    """All logits 0 => p = 1/2: a positive costs alpha/4 ln2, a negative
    (1-alpha)/4 ln2. Row 0 has one positive (class 1); row 1 has target
    C = 3, i.e. all three are negatives."""
    logits = torch.zeros(2, 3)
    target = torch.tensor([1, 3])
    unit = math.log(2) / 4
    expected = torch.tensor([[(1 - ALPHA), ALPHA, (1 - ALPHA)],
                             [(1 - ALPHA)] * 3]) * unit
    out = mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                      'none')
    torch.testing.assert_close(out, expected)
    total = expected.sum()
    torch.testing.assert_close(
        mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                    'sum'), total)
    # mmcv's 'mean' divides by the number of rows N, not N * C.
    torch.testing.assert_close(
        mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                    'mean'), total / 2)


@pytest.mark.parametrize('reduction', ['none', 'mean', 'sum'])
def test_focal_matches_reference(reduction):
    logits = torch.tensor([[1.5, -0.7, 0.2], [-2.0, 0.9, 3.1]],
                          dtype=torch.float64)
    target = torch.tensor([2, 3])
    ref = _reference_focal(logits, target, GAMMA, ALPHA)
    assert ref[1].gt(0).all()  # target == C: every entry is a negative
    expected = {'none': ref, 'sum': ref.sum(), 'mean': ref.sum() / 2}
    out = mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                      reduction)
    torch.testing.assert_close(out, expected[reduction])


def test_focal_with_per_class_weight():
    logits = torch.tensor([[1.5, -0.7, 0.2], [-2.0, 0.9, 3.1],
                           [0.3, 0.1, -0.4]], dtype=torch.float64)
    target = torch.tensor([2, 3, 0])
    weight = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    out = mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, weight,
                                      'none')
    expected = _reference_focal(logits, target, GAMMA, ALPHA, weight)
    torch.testing.assert_close(out, expected)
    # Weight indexed by the row's target; rows with target == C unweighted.
    plain = mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                        'none')
    torch.testing.assert_close(out[0], plain[0] * 3.0)
    torch.testing.assert_close(out[1], plain[1])
    torch.testing.assert_close(out[2], plain[2] * 0.5)


def test_focal_gradient():
    logits = torch.tensor([[1.5, -0.7, 0.2], [-2.0, 0.9, 3.1]],
                          dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 3])
    loss = mmcv_ops.sigmoid_focal_loss(logits, target, GAMMA, ALPHA, None,
                                       'mean')
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # Positive entry: pushing its logit up lowers the loss; negatives: up
    # raises it.
    assert logits.grad[0, 1] < 0
    assert (logits.grad[1] > 0).all()
    assert torch.autograd.gradcheck(
        lambda x: mmcv_ops.sigmoid_focal_loss(x, target, GAMMA, ALPHA, None,
                                              'none'),
        (logits.detach().requires_grad_(),))


def test_focal_rejects_bad_arguments():
    with pytest.raises(ValueError, match='reduction'):
        mmcv_ops.sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2).long(),
                                    reduction='avg')
    with pytest.raises(ValueError, match='expects input'):
        mmcv_ops.sigmoid_focal_loss(torch.zeros(2, 3, 4),
                                    torch.zeros(2).long())
