"""Tests of :class:`hermes_mm.datasets.samplers.multi_source_ratio_sampler.
MultiSourceRatioSampler`."""
import itertools
from collections import Counter

import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.dataset import ConcatDataset as MMEngineConcatDataset
from mmengine.registry import init_default_scope
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from hermes_mm.datasets.samplers.multi_source_ratio_sampler import \
    MultiSourceRatioSampler
from hermes_mm.registry import DATA_SAMPLERS


class Range(Dataset):
    """``n`` items; item ``i`` is ``offset + i`` (its global index)."""

    def __init__(self, n, offset=0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.offset + i


def concat(*sizes):
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return ConcatDataset([Range(n, o) for n, o in zip(sizes, offsets)])


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def source_stream(sampler, source, n):
    """The first ``n`` local indices this rank draws from ``source``."""
    lo = sampler.source_offsets[source]
    hi = lo + sampler.source_sizes[source]
    out = []
    for index in iter(sampler):
        if lo <= index < hi:
            out.append(index - lo)
            if len(out) == n:
                return out


@pytest.mark.parametrize('batch_size, ratio, per_source', [
    (6, [1, 2], [2, 4]),
    (4, [1, 1], [2, 2]),
    (2, [2, 2], [1, 1]),
    (5, [1, 4], [1, 4]),
    (6, [1, 1, 1], [2, 2, 2]),
])
def test_every_block_has_the_exact_source_mix(batch_size, ratio, per_source):
    sizes = [5, 23, 7][:len(ratio)]
    ds = concat(*sizes)
    sampler = MultiSourceRatioSampler(ds, batch_size, ratio, seed=0)
    bounds = [0] + ds.cumulative_sizes
    indices = take(sampler, 40 * batch_size)
    for b in range(40):
        block = indices[b * batch_size:(b + 1) * batch_size]
        sources = [
            next(s for s in range(len(sizes)) if i < bounds[s + 1])
            for i in block
        ]
        # Exactly batch_size * r_i / sum(r) per source, sources in order.
        assert sources == sorted(sources)
        assert [sources.count(s) for s in range(len(sizes))] == per_source


def test_same_seed_same_stream_different_seed_different_stream():
    ds = concat(9, 30)
    a = take(MultiSourceRatioSampler(ds, 4, [1, 3], seed=7), 200)
    b = take(MultiSourceRatioSampler(ds, 4, [1, 3], seed=7), 200)
    c = take(MultiSourceRatioSampler(ds, 4, [1, 3], seed=8), 200)
    assert a == b
    assert a != c


def test_seed_none_uses_a_synced_random_seed():
    sampler = MultiSourceRatioSampler(concat(3, 3), 2, [1, 1])
    assert isinstance(sampler.seed, int) and sampler.seed >= 0


def test_each_epoch_of_a_source_is_a_new_permutation():
    n = 10
    sampler = MultiSourceRatioSampler(concat(n, 50), 4, [1, 1], seed=0)
    stream = source_stream(sampler, 0, 3 * n)
    epochs = [stream[e * n:(e + 1) * n] for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(n))
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] != list(range(n))


def test_sources_have_independent_streams():
    # Same-size sources must not be shuffled identically.
    sampler = MultiSourceRatioSampler(concat(12, 12), 2, [1, 1], seed=0)
    assert source_stream(sampler, 0, 12) != source_stream(sampler, 1, 12)


def test_no_shuffle_is_in_order():
    sampler = MultiSourceRatioSampler(
        concat(3, 4), 2, [1, 1], shuffle=False, seed=0)
    assert take(sampler, 8) == [0, 3, 1, 4, 2, 5, 0, 6]


@pytest.mark.parametrize('n', [8, 7])
def test_ranks_split_each_epoch_of_a_source(n):
    world_size = 2
    per_rank = -(-n // world_size)
    draws = [
        source_stream(
            MultiSourceRatioSampler(
                concat(n, 40), 4, [1, 1], seed=3, rank=rank,
                world_size=world_size), 0, 2 * per_rank)
        for rank in range(world_size)
    ]
    for epoch in range(2):
        per_epoch = [d[epoch * per_rank:(epoch + 1) * per_rank] for d in draws]
        # Coverage: within ceil(n / world) draws per rank, every index.
        union = per_epoch[0] + per_epoch[1]
        assert set(union) == set(range(n))
        # Disjoint, except the documented wrap-around padding.
        padding = per_rank * world_size - n
        assert len(set(per_epoch[0]) & set(per_epoch[1])) == padding
        assert all(len(set(d)) == per_rank for d in per_epoch)


def test_ranks_draw_equal_counts_from_every_source():
    # Equal batch composition on every rank, even for uneven sources.
    samplers = [
        MultiSourceRatioSampler(concat(5, 11), 4, [1, 3], seed=0, rank=r,
                                world_size=3) for r in range(3)
    ]
    for sampler in samplers:
        counts = Counter(i >= 5 for i in take(sampler, 400))
        assert counts == {False: 100, True: 300}


def test_len_is_dataset_length_and_set_epoch_is_a_no_op():
    ds = concat(5, 11)
    a = MultiSourceRatioSampler(ds, 4, [1, 3], seed=0)
    b = MultiSourceRatioSampler(ds, 4, [1, 3], seed=0)
    assert len(a) == 16
    a.set_epoch(5)
    assert take(a, 40) == take(b, 40)


def test_each_iteration_restarts_the_stream():
    a = MultiSourceRatioSampler(concat(5, 11), 4, [1, 3], seed=0)
    first = take(a, 40)
    assert take(a, 40) == first
    it = iter(a)
    assert list(itertools.islice(it, 20)) + list(itertools.islice(it, 20)) \
        == first


@pytest.mark.parametrize('num_workers', [0, 2])
def test_real_dataloader_batches(num_workers):
    ds = concat(4, 30)
    batch_size = 6
    sampler = MultiSourceRatioSampler(ds, batch_size, [1, 2], seed=0)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler,
                        num_workers=num_workers)
    batches = list(itertools.islice(iter(loader), 10))
    expected = take(
        MultiSourceRatioSampler(ds, batch_size, [1, 2], seed=0),
        10 * batch_size)
    # Same indices with or without workers.
    assert torch.cat(batches).tolist() == expected
    for batch in batches:
        assert batch.shape == (batch_size, )
        assert (batch < 4).sum() == 2


class Items(BaseDataset):
    """An in-memory mmengine dataset of ``n`` items."""

    def __init__(self, n, **kwargs):
        self.n = n
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        return [dict(i=i) for i in range(self.n)]


def test_registered_and_works_with_lazy_mmengine_concat_dataset():
    init_default_scope('mmseg')  # as under a config's default_scope
    ds = MMEngineConcatDataset([Items(3), Items(5)], lazy_init=True)
    sampler = DATA_SAMPLERS.build(
        dict(type='MultiSourceRatioSampler', batch_size=2,
             source_ratio=[1, 1]),
        default_args=dict(dataset=ds, seed=0))
    assert isinstance(sampler, MultiSourceRatioSampler)
    assert sampler.source_offsets == [0, 3]
    indices = take(sampler, 6)
    assert all(i < 3 for i in indices[0::2])
    assert all(3 <= i < 8 for i in indices[1::2])


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(batch_size=5, source_ratio=[1, 1]), ValueError,
     r'`batch_size` 5 cannot be split exactly in the ratio \[1, 1\]'),
    (dict(batch_size=4, source_ratio=[1, 2]), ValueError, r'\[1, 2\]'),
    (dict(batch_size=4, source_ratio=[1]), ValueError,
     r'one entry per source; the dataset has 2 sources'),
    (dict(batch_size=4, source_ratio=[0, 4]), ValueError, r'\[0, 4\]'),
    (dict(batch_size=4, source_ratio=[1.0, 1.0]), ValueError, 'positive'),
    (dict(batch_size=0, source_ratio=[1, 1]), ValueError, 'got 0'),
    (dict(batch_size=4, source_ratio=[1, 1], rank=2, world_size=2),
     ValueError, 'rank 2, world_size 2'),
    (dict(batch_size=4, source_ratio=[1, 1], seed=-1), ValueError, '-1'),
])
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiSourceRatioSampler(concat(3, 5), **kwargs)


def test_non_concat_dataset_and_empty_source_raise():
    with pytest.raises(TypeError, match='ConcatDataset'):
        MultiSourceRatioSampler(Range(4), 2, [1, 1])
    with pytest.raises(ValueError, match=r'Sources \[0\].*sizes \[0, 5\]'):
        MultiSourceRatioSampler(concat(0, 5), 2, [1, 1])
