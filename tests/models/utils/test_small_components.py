"""remove_small_components: hand-made maps with known component sizes."""
import pytest
import torch

from hermes_mm.models.utils import check_min_area, remove_small_components


def test_drops_only_components_below_the_area():
    m = torch.zeros(1, 10, 10, dtype=torch.long)
    m[0, 0:4, 0:4] = 1  # 16 px = 16 %
    m[0, 8, 8] = 1  # 1 px
    m[0, 6:8, 0:2] = 1  # 4 px
    m[0, 9, 0] = 1  # 1 px, two rows below the 4-px block
    out = remove_small_components(m, 0.05)  # 5 px
    expected = torch.zeros_like(m)
    expected[0, 0:4, 0:4] = 1
    assert torch.equal(out, expected)
    assert out.dtype == m.dtype and out.shape == m.shape
    # the input is not modified; 0 keeps everything
    assert int(m.sum()) == 16 + 1 + 4 + 1
    assert torch.equal(remove_small_components(m, 0.0), m)
    # an area of exactly the threshold stays
    assert torch.equal(remove_small_components(m, 0.04), m.masked_fill(
        (torch.arange(10).view(1, 10, 1) >= 8) & (m == 1), 0))


def test_diagonal_neighbours_are_one_component():
    m = torch.zeros(6, 6, dtype=torch.long)
    for i in range(4):
        m[i, i] = 1  # a 4-px diagonal line: one 8-connected component
    assert torch.equal(remove_small_components(m, 4 / 36), m)
    assert int(remove_small_components(m, 5 / 36).sum()) == 0


def test_each_class_and_background_index():
    m = torch.full((8, 8), 2, dtype=torch.long)  # background = 2
    m[0:2, 0:2] = 0  # 4 px of class 0
    m[4:8, 4:8] = 1  # 16 px of class 1
    out = remove_small_components(m, 0.1, background=2)
    assert int((out == 0).sum()) == 0 and int((out == 1).sum()) == 16


@pytest.mark.parametrize('bad', [-0.1, 1.0, 2, '0.1', None, True])
def test_min_area_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match='min_lesion_area'):
        check_min_area(bad)
