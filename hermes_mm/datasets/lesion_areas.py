"""Lesion areas of the labelled training images of a config.

Used to choose ``test_cfg.min_lesion_area`` (see
:func:`hermes_mm.models.utils.remove_small_components`) from the data the
model is trained on: ``tools/lesion_areas.py CONFIG`` prints the smallest
labelled lesion as a fraction of its image, and the image classes that show
a lesion, for ``test_cfg.lesion_classes`` (see
:func:`hermes_mm.models.utils.mask_decides_lesion`).
"""
from typing import Dict, List, Optional

import numpy as np
from mmengine.config import Config

from hermes_mm.registry import DATASETS
from hermes_mm.utils.config_utils import iter_dataset_cfgs

#: ``subset`` of the datasets whose masks were given for training.
LABELLED_SUBSET = 'labeled'
#: The transforms of a dataset's own pipeline that read image and masks.
LOADING = ('LoadImageAsStored', 'LoadImageFromFile',
           'LoadMultiTaskAnnotations')


def _labelled_datasets(cfg: Config):
    """``(datasets, found)``: the ``subset='labeled'`` training datasets,
    built with their loading transforms only, and a description of every
    training dataset (for error messages)."""
    datasets, found = [], []
    for path, ds_cfg in iter_dataset_cfgs(
            cfg.train_dataloader.get('dataset'), 'train_dataloader.dataset'):
        found.append(f'{path} ({ds_cfg.get("type")}, subset='
                     f'{ds_cfg.get("subset")!r})')
        if ds_cfg.get('subset') != LABELLED_SUBSET:
            continue
        loading = [t for t in ds_cfg.get('pipeline', [])
                   if t.get('type') in LOADING]
        datasets.append(DATASETS.build(dict(ds_cfg, pipeline=loading)))
    return datasets, found


def labelled_lesion_areas(cfg: Config) -> List[float]:
    """Lesion area / image area of every labelled training image that has
    a lesion (masks merged and binarised by the dataset's own
    ``LoadMultiTaskAnnotations``).

    Raises:
        ValueError: If ``train_dataloader`` has no dataset with
            ``subset='labeled'`` or none of its images has a lesion.
    """
    areas = []
    datasets, found = _labelled_datasets(cfg)
    for dataset in datasets:
        for i in range(len(dataset)):
            seg_map = dataset[i].get('gt_seg_map')
            if seg_map is not None and seg_map.any():
                areas.append(float(np.mean(seg_map > 0)))
    if not areas:
        raise ValueError(
            f"no labelled lesion: train_dataloader needs a dataset with "
            f"subset='{LABELLED_SUBSET}' whose images have lesion masks; "
            f"found {found or 'no dataset'}")
    return areas


def lesion_class_indices(cfg: Config) -> Optional[List[int]]:
    """Indices (in ``cls_classes``) of the labelled dataset's
    ``lesion_classes``: the value of ``test_cfg.lesion_classes``. None when
    no labelled dataset names them or every class is a lesion class (no
    lesion-free class for an empty mask, e.g. TN3K)."""
    datasets, _ = _labelled_datasets(cfg)
    for dataset in datasets:
        names = list(dataset.metainfo.get('cls_classes') or ())
        lesion = list(dataset.metainfo.get('lesion_classes') or ())
        if lesion and len(set(lesion)) < len(names):
            return sorted(names.index(c) for c in lesion)
    return None


def lesion_area_summary(areas: List[float]) -> Dict[str, float]:
    """Count, minimum, 5th percentile and median of ``areas``."""
    values = np.asarray(areas, dtype=float)
    return dict(
        labelled_lesions=int(values.size),
        min=float(values.min()),
        p5=float(np.percentile(values, 5)),
        median=float(np.median(values)))
