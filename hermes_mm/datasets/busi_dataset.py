"""BUSI (Breast Ultrasound Images, Al-Dhabyani et al. 2020,
https://doi.org/10.1016/j.dib.2019.104863) read from its raw folder layout.

No conversion step: point ``data_root`` at the unpacked
``Dataset_BUSI_with_GT`` folder (``benign/``, ``malignant/``, ``normal/``).
"""
from typing import List, Optional, Sequence

from hermes_mm.registry import DATASETS
from .annotation_dataset import MultiTaskAnnotationDataset
from .splits import ImageRecord, scan_busi


@DATASETS.register_module()
class BUSIDataset(MultiTaskAnnotationDataset):
    """Lesion segmentation + benign/malignant/normal classification on BUSI.

    Layout under ``data_root`` (see :func:`hermes_mm.datasets.splits.
    scan_busi`): one folder per class of ``metainfo['cls_classes']``; in
    each, images (``benign (3).png``) and their masks
    (``benign (3)_mask.png``, optionally ``benign (3)_mask_1.png``, ...),
    which ``LoadMultiTaskAnnotations`` OR-merges. "normal" images have
    all-background masks. Every image must have a mask.

    Images are ordered by class, then by natural file-name order
    (``benign (2)`` before ``benign (10)``). Data-info dicts, ``split_file``
    and ``subset`` are as in :class:`MultiTaskAnnotationDataset`, whose
    checks also apply (a split path not in the data set, a path in two
    subsets, a class without a labelled image, ...).

    To use other class folders, override both
    ``metainfo=dict(cls_classes=(...), lesion_classes=(...))``.

    Args:
        data_root (str): The BUSI folder.
        split_file (str, optional): Split JSON from ``tools/make_split.py``,
            absolute or relative to the current directory, else to
            ``data_root``. Defaults to None.
        subset (str, optional): ``'labeled'``, ``'unlabeled'``, ``'val'``,
            ``'test'``, ``'train'`` (labelled + unlabelled), or None (all
            images). Needs ``split_file``. Defaults to None.
        img_suffixes (Sequence[str]): Image/mask file extensions,
            case-insensitive. Defaults to common image formats.
        mask_token (str): Stem suffix of mask files (``<stem><token>`` or
            ``<stem><token>_<K>``). Defaults to ``'_mask'``.
        **kwargs: Other :class:`mmseg.datasets.BaseSegDataset` arguments
            (``metainfo``, ``pipeline``, ``test_mode``, ...). The folder is
            read from the local file system; ``data_prefix``/``ann_file``
            are not used.
    """

    METAINFO = dict(
        classes=('background', 'lesion'),
        palette=[[0, 0, 0], [255, 0, 0]],
        cls_classes=('benign', 'malignant', 'normal'),
        lesion_classes=('benign', 'malignant'))

    def __init__(self,
                 data_root: Optional[str] = None,
                 split_file: Optional[str] = None,
                 subset: Optional[str] = None,
                 img_suffixes: Sequence[str] = ('.png', '.jpg', '.jpeg',
                                                '.bmp', '.tif', '.tiff'),
                 mask_token: str = '_mask',
                 **kwargs) -> None:
        if not mask_token:
            raise ValueError('mask_token must be a non-empty string, e.g. '
                             "'_mask'.")
        self.img_suffixes = tuple(img_suffixes)
        self.mask_token = mask_token
        super().__init__(
            ann_file='',
            data_root=data_root,
            split_file=split_file,
            subset=subset,
            **kwargs)

    def load_records(self, cls_classes: Sequence[str]) -> List[ImageRecord]:
        """Scan the class folders (every image of the data set)."""
        return scan_busi(
            self._root(),
            cls_classes,
            img_suffixes=self.img_suffixes,
            mask_token=self.mask_token)
