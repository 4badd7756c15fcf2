"""Tests of in-batch CutMix: identity at prob 0, every image mixed at prob
1, pasted content equal to the partner's in the image and every dense
target, inputs untouched, seeded reproducibility, box area and aspect."""
import math

import pytest
import torch

from hermes_mm.models.utils.cutmix import cutmix_batch, sample_box

B, C, H, W = 4, 3, 16, 20


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, C, H, W, generator=g)
    probs = torch.rand(B, 2, H, W, generator=g)  # (B, K, H, W) target
    region = torch.rand(B, H, W, generator=g)  # (B, H, W) target
    # every pixel of every image is distinct: image i holds i*1000 + pixel id
    ids = (torch.arange(B)[:, None, None] * 1000 +
           torch.arange(H * W).view(1, H, W)).float()
    return images, [probs, region, ids]


def test_prob_zero_is_identity():
    images, targets = _batch()
    out_x, out_t, mixed = cutmix_batch(images, targets, prob=0.0)
    assert torch.equal(out_x, images)
    assert all(torch.equal(a, b) for a, b in zip(out_t, targets))
    assert mixed.dtype == torch.bool and mixed.shape == (B, )
    assert not mixed.any()


def test_single_image_batch_is_never_mixed():
    images, targets = _batch()
    out_x, _, mixed = cutmix_batch(images[:1], [t[:1] for t in targets],
                                   prob=1.0)
    assert torch.equal(out_x, images[:1]) and not mixed.any()


@pytest.mark.parametrize('seed', range(5))
def test_prob_one_mixes_every_image_with_partner_content(seed):
    images, targets = _batch(seed)
    copies = [images.clone()] + [t.clone() for t in targets]
    g = torch.Generator().manual_seed(seed)
    out_x, out_t, mixed = cutmix_batch(
        images, targets, prob=1.0, area_range=(0.1, 0.3), generator=g)
    assert mixed.all()
    # inputs are not modified
    assert torch.equal(images, copies[0])
    assert all(torch.equal(t, c) for t, c in zip(targets, copies[1:]))

    ids = targets[2]
    partners = set()
    for i in range(B):
        # which pixels changed (via the unique-id target), and from where
        changed = out_t[2][i] != ids[i]
        assert changed.any(), f'image {i} was not mixed'
        src = (out_t[2][i][changed] // 1000).long().unique()
        assert src.numel() == 1 and int(src) != i
        j = int(src)
        partners.add((j - i) % B)
        # the changed pixels form one axis-aligned box ...
        rows = changed.any(dim=1).nonzero().flatten()
        cols = changed.any(dim=0).nonzero().flatten()
        top, bottom = int(rows.min()), int(rows.max()) + 1
        left, right = int(cols.min()), int(cols.max()) + 1
        box = (slice(top, bottom), slice(left, right))
        assert int(changed.sum()) == (bottom - top) * (right - left)
        # ... holding the partner's pixels at the same place
        assert torch.equal(out_t[2][i][box], ids[j][box])
        assert torch.equal(out_x[i][:, box[0], box[1]],
                           images[j][:, box[0], box[1]])
        assert torch.equal(out_t[0][i][:, box[0], box[1]],
                           targets[0][j][:, box[0], box[1]])
        assert torch.equal(out_t[1][i][box], targets[1][j][box])
        # and the rest is the image's own
        keep = ~changed
        assert torch.equal(out_x[i][:, keep], images[i][:, keep])
        assert torch.equal(out_t[0][i][:, keep], targets[0][i][:, keep])
        assert torch.equal(out_t[1][i][keep], targets[1][i][keep])
    # one cyclic shift for the whole batch
    assert len(partners) == 1


def test_seeded_generator_is_reproducible():
    images, targets = _batch()
    runs = [
        cutmix_batch(images, targets, prob=0.5,
                     generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    (x1, t1, m1), (x2, t2, m2) = runs
    assert torch.equal(x1, x2) and torch.equal(m1, m2)
    assert all(torch.equal(a, b) for a, b in zip(t1, t2))
    other = cutmix_batch(images, targets, prob=0.5,
                         generator=torch.Generator().manual_seed(8))
    assert not torch.equal(x1, other[0]) or not torch.equal(m1, other[2])


@pytest.mark.parametrize('area_range, aspect_range', [
    ((0.02, 0.4), (0.3, 1 / 0.3)),  # the defaults
    # large boxes with extreme aspect: one side must be clamped to the
    # image, and the area must still come from the range
    ((0.35, 0.45), (0.3, 1 / 0.3)),
    ((0.5, 0.6), (0.1, 10.0)),
])
def test_box_inside_image_with_area_and_aspect_in_range(
        area_range, aspect_range):
    g = torch.Generator().manual_seed(0)
    height, width = 32, 40
    for _ in range(300):
        top, left, box_h, box_w = sample_box(height, width, area_range,
                                             aspect_range, g)
        assert 0 <= top and top + box_h <= height
        assert 0 <= left and left + box_w <= width
        assert box_h >= 1 and box_w >= 1
        # rounding each side to whole pixels moves the area by at most
        # half a pixel row/column (+ 1/4)
        slack = (box_h + box_w) / 2 + 0.25
        area = box_h * box_w
        assert area >= area_range[0] * height * width - slack
        assert area <= area_range[1] * height * width + slack
        if box_h < height and box_w < width:  # not clamped: aspect holds
            aspect = box_h / box_w
            tol = 0.5 / box_h + 0.5 / box_w + 1e-9
            assert math.log(aspect_range[0]) - 2 * tol <= math.log(
                aspect) <= math.log(aspect_range[1]) + 2 * tol
