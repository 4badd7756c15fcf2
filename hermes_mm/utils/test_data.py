"""Point a config's test datasets at every image of a folder.

Testing a trained model on a separate folder with its own masks (another
hospital's BUSI-layout export) is a core workflow: ``tools/test.py CONFIG
CKPT --data-root FOLDER --all-images`` (or ``--split-file none``) drops the
split of every test dataset so that each image of ``FOLDER`` is tested.
"""
from typing import List

from mmengine.config import Config
from mmengine.logging import print_log

from .config_utils import iter_dataset_cfgs

#: ``--split-file`` values that mean "no split: every image".
NO_SPLIT_VALUES = ('none', 'null', '')


def is_no_split(split_file: object) -> bool:
    """Whether a ``--split-file`` value asks for no split (``none``)."""
    return isinstance(split_file, str) and \
        split_file.strip().lower() in NO_SPLIT_VALUES


def use_all_images(cfg: Config, loader_key: str = 'test_dataloader'
                   ) -> List[str]:
    """Make every dataset of ``cfg[loader_key]`` read all its images.

    Each dataset config with a ``split_file`` or ``subset`` key gets
    ``split_file=None, subset=None`` (``subset=None`` keeps every image;
    :class:`~hermes_mm.datasets.SyntheticBUSIDataset` then skips its
    in-memory split too).

    Args:
        cfg (Config): Loaded config, modified in place.
        loader_key (str): The dataloader whose datasets change. Defaults
            to ``'test_dataloader'``.

    Returns:
        list[str]: Config paths of the datasets that changed.

    Raises:
        ValueError: ``cfg`` has no such dataloader, or none of its
            datasets takes a split (the message names the loader).
    """
    loader = cfg.get(loader_key)
    if not loader or not loader.get('dataset'):
        raise ValueError(f'--all-images: the config has no {loader_key} '
                         f'with a dataset.')
    changed = []
    for path, ds_cfg in iter_dataset_cfgs(loader['dataset'],
                                          f'{loader_key}.dataset'):
        if 'split_file' in ds_cfg or 'subset' in ds_cfg:
            ds_cfg['split_file'] = None
            ds_cfg['subset'] = None
            changed.append(f"{path} ({ds_cfg['type']})")
    if not changed:
        raise ValueError(
            f'--all-images: no dataset of {loader_key} has a split_file or '
            f'subset key to clear; it already reads what its config says.')
    print_log('Testing every image of the data root (no split): '
              + ', '.join(changed), logger='current')
    return changed


__all__ = ['NO_SPLIT_VALUES', 'is_no_split', 'use_all_images']
