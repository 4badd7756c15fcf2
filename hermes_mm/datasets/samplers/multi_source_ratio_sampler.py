"""An infinite sampler that gives every batch a fixed mix of data sources.

Semi-supervised training needs ``B_l`` labelled and ``B_u`` unlabelled
images in *every* batch, whatever the (very unequal) sizes of the two sets.
The design follows MMDetection's ``MultiSourceSampler``
(``mmdet/datasets/samplers/multi_source_sampler.py``: per-source infinite
index streams, ``source_ratio``, batch-size blocks) and MMEngine's
``InfiniteSampler`` (seeding, ``set_epoch``). Unlike MMDetection's, each
source is sharded across ranks per epoch of *that* source, so in one pass
over a small labelled set no two ranks see the same image.
"""
import itertools
import numbers
from typing import Iterator, List, Optional, Sequence

import numpy as np
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from hermes_mm.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class MultiSourceRatioSampler(Sampler):
    """Yield indices of a ``ConcatDataset`` in blocks with fixed source mix.

    Every consecutive block of ``batch_size`` indices holds exactly
    ``batch_size * source_ratio[i] / sum(source_ratio)`` indices from
    source ``i``, sources in order (all of source 0, then source 1, ...).
    Use it with ``batch_size`` equal to the data loader's and an
    iteration-based loop: the stream never ends.

    Each source is an independent infinite stream. Epoch ``e`` of source
    ``i`` is a permutation of its ``n_i`` indices (identity with
    ``shuffle=False``) drawn from a generator seeded by ``(seed, i)``, so
    every epoch differs and sources do not share random draws. The
    permutation is padded by wrapping around to a multiple of
    ``world_size`` (like ``torch.utils.data.DistributedSampler``) and rank
    ``r`` takes positions ``r, r + world_size, ...``: within one epoch of a
    source the ranks get disjoint indices, except that the first
    ``ceil(n_i / world_size) * world_size - n_i`` indices of the
    permutation are seen by two ranks; every rank gets
    ``ceil(n_i / world_size)`` indices per epoch. Indices are offset by
    ``dataset.cumulative_sizes``.

    The sampler runs in the main process, so the indices do not depend on
    the data loader's ``num_workers``. Each ``iter(sampler)`` restarts the
    stream from the seed (MMEngine's ``InfiniteSampler`` continues a shared
    generator instead), so a data loader's batches never depend on what an
    earlier, discarded iterator or its workers' prefetching consumed.

    Args:
        dataset (ConcatDataset): The concatenated sources, e.g.
            ``ConcatDataset([labelled, unlabelled])``.
        batch_size (int): Size of each block; must equal the data loader's
            ``batch_size``.
        source_ratio (Sequence[int]): Relative number of samples per source
            in a batch, one positive int per source; ``batch_size *
            source_ratio[i]`` must be divisible by ``sum(source_ratio)``.
        shuffle (bool): Shuffle each epoch of each source. Defaults to True.
        seed (int, optional): Non-negative random seed. None: a random seed
            shared by all ranks (``sync_random_seed``). Defaults to None.
        rank (int, optional): This process's rank. None: from
            ``get_dist_info()``. Defaults to None.
        world_size (int, optional): Number of processes. None: from
            ``get_dist_info()``. Defaults to None.
    """

    def __init__(self,
                 dataset: ConcatDataset,
                 batch_size: int,
                 source_ratio: Sequence[int],
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        if not hasattr(dataset, 'datasets'):
            raise TypeError('MultiSourceRatioSampler needs a ConcatDataset, '
                            f'got {type(dataset)}.')
        if hasattr(dataset, 'full_init'):
            # `cumulative_sizes` exists only once a lazy ConcatDataset is
            # initialised.
            dataset.full_init()
        sizes = [len(source) for source in dataset.datasets]
        source_ratio = list(source_ratio)
        if len(source_ratio) != len(sizes):
            raise ValueError(
                f'`source_ratio` {source_ratio} needs one entry per source; '
                f'the dataset has {len(sizes)} sources.')
        if not all(
                isinstance(r, numbers.Integral) and not isinstance(r, bool)
                and r > 0 for r in source_ratio):
            raise ValueError('`source_ratio` must hold positive ints, got '
                             f'{source_ratio}.')
        if not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(
                f'`batch_size` must be a positive int, got {batch_size}.')
        total_ratio = sum(source_ratio)
        if any(batch_size * r % total_ratio for r in source_ratio):
            raise ValueError(
                f'`batch_size` {batch_size} cannot be split exactly in the '
                f'ratio {source_ratio}: batch_size * ratio_i must be '
                f'divisible by sum(source_ratio) = {total_ratio}.')
        empty = [i for i, size in enumerate(sizes) if size == 0]
        if empty:
            raise ValueError(f'Sources {empty} of the dataset are empty '
                             f'(sizes {sizes}).')

        dist_rank, dist_world_size = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = (
            dist_world_size if world_size is None else world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'Need 0 <= rank < world_size, got rank '
                             f'{self.rank}, world_size {self.world_size}.')
        if seed is None:
            seed = sync_random_seed()
        if seed < 0:
            raise ValueError(f'`seed` must be non-negative, got {seed}.')

        self.dataset = dataset
        self.batch_size = batch_size
        self.source_ratio = source_ratio
        self.shuffle = shuffle
        self.seed = seed
        self.source_sizes = sizes
        self.num_per_source: List[int] = [
            batch_size * r // total_ratio for r in source_ratio
        ]
        self.source_offsets: List[int] = [0] + list(
            dataset.cumulative_sizes[:-1])

    def _source_indices(self, source: int) -> Iterator[int]:
        """Infinitely yield this rank's local indices of one source."""
        size = self.source_sizes[source]
        rng = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(source, )))
        per_rank = -(-size // self.world_size)  # ceil division
        while True:
            epoch = rng.permutation(size) if self.shuffle else np.arange(size)
            # Wrap around so every rank gets the same number of indices.
            epoch = np.resize(epoch, per_rank * self.world_size)
            yield from epoch[self.rank::self.world_size].tolist()

    def _indices_of_rank(self) -> Iterator[int]:
        """Infinitely yield global indices, ``batch_size`` blocks at a time."""
        streams = [
            self._source_indices(source)
            for source in range(len(self.source_sizes))
        ]
        while True:
            for stream, num, offset in zip(streams, self.num_per_source,
                                           self.source_offsets):
                for index in itertools.islice(stream, num):
                    yield index + offset

    def __iter__(self) -> Iterator[int]:
        """A fresh infinite stream, from the start, for each call."""
        return self._indices_of_rank()

    def __len__(self) -> int:
        """Length of the concatenated dataset (the stream is infinite)."""
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """No-op: epochs of each source advance inside the stream, and the
        sampler is meant for iteration-based loops."""
