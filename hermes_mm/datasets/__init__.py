from . import samplers, transforms  # noqa: F401
from .annotation_dataset import MultiTaskAnnotationDataset, read_ann_file
from .busi_dataset import BUSIDataset
from .splits import (SPLIT_KEYS, SUBSETS, load_split, make_split, save_split,
                     scan_busi, validate_split)
from .synthetic_busi_dataset import SyntheticBUSIDataset
from .unlabeled_image_dataset import UnlabeledImageDataset

__all__ = [
    'BUSIDataset', 'MultiTaskAnnotationDataset', 'SPLIT_KEYS', 'SUBSETS',
    'SyntheticBUSIDataset', 'load_split', 'make_split', 'read_ann_file',
    'samplers', 'save_split',
    'scan_busi', 'transforms', 'UnlabeledImageDataset', 'validate_split'
]
