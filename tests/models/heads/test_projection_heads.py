"""Tests of the image- and pixel-level projection heads: unit norm, shapes,
gradients, batch-of-one behaviour of BatchNorm."""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (compat first: mmcv-lite fallback ops)
from hermes_mm.models.heads.pixel_projection_head import PixelProjectionHead
from hermes_mm.models.heads.projection_head import (ProjectionHead,
                                                    batch_safe_norm)
from hermes_mm.registry import MODELS


def _build(cfg):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(cfg)


@pytest.mark.parametrize('num_layers', [1, 2, 3])
@pytest.mark.parametrize('norm_cfg', [dict(type='BN1d'), dict(type='LN'),
                                      None])
def test_projection_head_unit_norm_and_gradients(num_layers, norm_cfg):
    head = _build(
        dict(
            type='ProjectionHead',
            in_channels=12,
            hidden_channels=16,
            out_channels=8,
            num_layers=num_layers,
            norm_cfg=norm_cfg))
    assert isinstance(head, ProjectionHead)
    assert len(head.fcs) == num_layers - 1
    x = torch.randn(5, 12, requires_grad=True)
    z = head(x)
    assert z.shape == (5, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    torch.manual_seed(1)
    (z * torch.randn(5, 8)).sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_projection_head_batch_of_one():
    head = _build(
        dict(
            type='ProjectionHead',
            in_channels=6,
            hidden_channels=10,
            out_channels=4))
    bn = head.norms[0]
    assert isinstance(bn, nn.BatchNorm1d)
    # give the running statistics non-trivial values
    with torch.no_grad():
        head(torch.randn(7, 6) * 3 + 1)
    stats = (bn.running_mean.clone(), bn.running_var.clone(),
             bn.num_batches_tracked.clone())
    torch.manual_seed(2)
    x = torch.randn(1, 6, requires_grad=True)

    head.eval()
    z_eval = head(x)
    head.train()
    z_train = head(x)  # plain BatchNorm1d would raise here
    # training with B=1: eval-mode normalisation, statistics untouched
    torch.testing.assert_close(z_train, z_eval)
    torch.testing.assert_close(z_train.norm(dim=1), torch.ones(1))
    for before, after in zip(
            stats, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
        assert torch.equal(before, after)
    z_train.sum().backward()
    assert x.grad.abs().sum() > 0 and head.fcs[0].weight.grad.abs().sum() > 0
    # B=2 in training uses batch statistics and updates the running ones
    head(torch.randn(2, 6))
    assert bn.num_batches_tracked == stats[2] + 1


def test_batch_safe_norm_leaves_other_cases_to_the_norm():
    x = torch.randn(1, 3)
    ln = nn.LayerNorm(3)
    torch.testing.assert_close(batch_safe_norm(ln, x), ln(x))
    bn = nn.BatchNorm1d(3)  # 4 values per channel: batch statistics
    x4 = torch.randn(4, 3)
    torch.testing.assert_close(
        batch_safe_norm(bn, x4), (x4 - x4.mean(0)) / torch.sqrt(
            x4.var(0, unbiased=False) + bn.eps))
    assert bn.num_batches_tracked == 1


def test_projection_head_zero_output_is_not_nan():
    head = _build(
        dict(
            type='ProjectionHead',
            in_channels=4,
            hidden_channels=4,
            out_channels=3))
    nn.init.zeros_(head.fc_out.weight)
    nn.init.zeros_(head.fc_out.bias)
    z = head(torch.randn(2, 4))
    assert torch.equal(z, torch.zeros(2, 3))


@pytest.mark.parametrize('cls,kwargs,match', [
    (ProjectionHead, dict(num_layers=0), 'num_layers must be >= 1, got 0'),
    (ProjectionHead, dict(out_channels=0), 'out_channels must be >= 1'),
    (PixelProjectionHead, dict(num_layers=0), 'got 0'),
    (PixelProjectionHead, dict(eps=0.0), 'eps must be > 0'),
])
def test_invalid_args(cls, kwargs, match):
    args = dict(in_channels=4, hidden_channels=4, out_channels=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cls(**args)


def test_wrong_input_shapes():
    head = ProjectionHead(4, 8, 2)
    with pytest.raises(ValueError, match=r'\(B, 4\)'):
        head(torch.zeros(2, 5))
    pix = PixelProjectionHead(4, 8, 2)
    with pytest.raises(ValueError, match=r'\(2, 4\)'):
        pix(torch.zeros(2, 4))


@pytest.mark.parametrize('num_layers', [1, 2])
def test_pixel_head_unit_norm_shapes_and_gradients(num_layers):
    head = _build(
        dict(
            type='PixelProjectionHead',
            in_channels=6,
            hidden_channels=10,
            out_channels=4,
            num_layers=num_layers))
    assert isinstance(head, PixelProjectionHead)
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    z = head(x)
    assert z.shape == (2, 4, 5, 7)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2, 5, 7))
    torch.manual_seed(3)
    (z * torch.randn_like(z)).sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pixel_head_is_per_pixel_in_eval():
    head = _build(
        dict(
            type='PixelProjectionHead',
            in_channels=3,
            hidden_channels=8,
            out_channels=5))
    head.eval()
    torch.manual_seed(4)
    x = torch.randn(1, 3, 4, 4)
    # a 1x1-conv MLP: each pixel's embedding depends on that pixel only
    torch.testing.assert_close(head(x)[..., 1:2, 2:3], head(x[..., 1:2, 2:3]))
    # ... and forward_pixels on gathered vectors gives the same embeddings
    pixels = x.flatten(2)[0].t()  # (16, 3)
    torch.testing.assert_close(
        head.forward_pixels(pixels),
        head(x).flatten(2)[0].t())


def test_pixel_head_single_image_and_single_pixel_training():
    head = _build(
        dict(
            type='PixelProjectionHead',
            in_channels=3,
            hidden_channels=8,
            out_channels=5))
    bn = head.norms[0]
    # one image, many pixels: ordinary batch statistics
    head(torch.randn(1, 3, 4, 4))
    assert bn.num_batches_tracked == 1
    # one pixel in total: falls back to running statistics, like eval
    x = torch.randn(1, 3, 1, 1)
    z_train = head(x)
    assert bn.num_batches_tracked == 1
    head.eval()
    torch.testing.assert_close(z_train, head(x))
