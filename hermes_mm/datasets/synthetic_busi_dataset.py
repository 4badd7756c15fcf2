"""Synthetic BUSI-layout data, generated on first use (demos, tests,
benchmarks): one command trains on it, with no download and no split file.
"""
import json
import os
import os.path as osp
import shutil
from typing import List, Optional, Sequence, Tuple

from hermes_mm.registry import DATASETS
from .busi_dataset import BUSIDataset
from .splits import ImageRecord, make_split, select_subset
from .synthetic import generate_synthetic_busi, get_style

MARKER_FILE = 'hermes_synthetic.json'


def ensure_synthetic_busi(data_root: str, num: int, seed: int,
                          style: str = 'default') -> str:
    """Generate the synthetic set into ``data_root`` unless it is there.

    ``style`` names one of :data:`hermes_mm.datasets.synthetic.STYLES`
    (with its own image size range).

    Generation writes to a private temporary folder that is renamed into
    place, so concurrent processes (DDP ranks, dataloader workers) never
    see a half-written set. An existing folder must have been written by
    the generator with the same ``num`` and ``seed``.

    Returns:
        str: ``data_root``.

    Raises:
        ValueError: ``data_root`` holds other data, or a synthetic set made
            with other settings.
    """
    marker = osp.join(data_root, MARKER_FILE)
    size_range = get_style(style).size_range
    expected = dict(num=int(num), seed=int(seed))
    # Sets written before styles existed have no 'style' key: default.
    if style != 'default':
        expected['style'] = style
    if not osp.exists(data_root) or not os.listdir(data_root):
        parent = osp.dirname(osp.abspath(data_root))
        os.makedirs(parent, exist_ok=True)
        tmp = f'{osp.abspath(data_root)}.tmp-{os.getpid()}'
        shutil.rmtree(tmp, ignore_errors=True)
        generate_synthetic_busi(tmp, num=num, seed=seed, style=style,
                                size_range=size_range)
        with open(osp.join(tmp, MARKER_FILE), 'w') as f:
            json.dump(expected, f)
        try:
            if osp.isdir(data_root) and not os.listdir(data_root):
                os.rmdir(data_root)
            os.rename(tmp, data_root)
        except OSError:
            # Another process won the race; its data is identical.
            shutil.rmtree(tmp, ignore_errors=True)
    if not osp.isfile(marker):
        raise ValueError(
            f'{data_root} is not empty and was not written by the synthetic '
            f'generator (no {MARKER_FILE}); SyntheticBUSIDataset only reads '
            'its own data. For real BUSI use BUSIDataset / '
            'configs/hermes_busi.py, or point data_root at a new folder.')
    with open(marker) as f:
        found = json.load(f)
    found.setdefault('style', 'default')
    if {k: found.get(k) for k in expected} != expected or \
            found['style'] != style:
        raise ValueError(
            f'{data_root} holds a synthetic set made with {found}, but the '
            f'config asks for {expected}; delete the folder or change '
            'data_root.')
    return data_root


@DATASETS.register_module()
class SyntheticBUSIDataset(BUSIDataset):
    """:class:`BUSIDataset` on a generated synthetic set, split in memory.

    On first use the set is generated into ``data_root``
    (:func:`hermes_mm.datasets.synthetic.generate_synthetic_busi`). Without
    a ``split_file``, ``subset`` selects from a stratified split computed
    in memory with :func:`hermes_mm.datasets.splits.make_split`, exactly as
    ``tools/make_split.py`` would write it.

    Args:
        data_root (str): Where the set lives (generated if absent/empty).
        num (int): Number of images to generate.
        generator_seed (int): Seed of the generator.
        style (str): Generator style (``synthetic.STYLES``); 'default' is
            the style of every result before 2026-12.
        labeled_ratio (float): Labelled fraction of the train split.
        split_seed (int): Seed of the split.
        split_ratios (tuple): train/val/test fractions.
        split_file (str, optional): Use this split file instead.
        subset (str, optional): Subset to keep (see ``BUSIDataset``).
        **kwargs: Other ``BUSIDataset`` arguments.
    """

    def __init__(self,
                 data_root: str = 'data/synthetic_busi',
                 num: int = 200,
                 generator_seed: int = 0,
                 style: str = 'default',
                 labeled_ratio: float = 0.125,
                 split_seed: int = 0,
                 split_ratios: Tuple[float, float, float] = (0.7, 0.1, 0.2),
                 split_file: Optional[str] = None,
                 subset: Optional[str] = None,
                 **kwargs) -> None:
        self.num = num
        self.generator_seed = generator_seed
        get_style(style)  # fail at build time on an unknown style
        self.style = style
        self.labeled_ratio = labeled_ratio
        self.split_seed = split_seed
        self.split_ratios = tuple(split_ratios)
        self.inline_subset = subset if split_file is None else None
        super().__init__(
            data_root=data_root,
            split_file=split_file,
            subset=subset if split_file is not None else None,
            **kwargs)

    def load_records(self, cls_classes: Sequence[str]) -> List[ImageRecord]:
        """Generate if needed, scan, and keep the in-memory subset."""
        ensure_synthetic_busi(self._root(), self.num, self.generator_seed,
                              self.style)
        records = super().load_records(cls_classes)
        if self.inline_subset is None:
            return records
        split = make_split([(r.img_rel, r.gt_label) for r in records],
                           self.labeled_ratio,
                           self.split_seed,
                           self.split_ratios,
                           num_classes=len(cls_classes))
        return select_subset(
            records,
            split,
            self.inline_subset,
            cls_classes,
            source=f'in-memory split (labeled_ratio={self.labeled_ratio}, '
            f'seed={self.split_seed})')
