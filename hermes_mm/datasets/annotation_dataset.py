"""A multi-task (lesion mask + image class) dataset read from a JSON-lines
annotation file, for TN3K, DDTI or any data set without a folder layout.

Each non-blank line of the annotation file describes one image::

    {"img": "images/0001.png", "masks": ["masks/0001.png"], "label": "benign"}

This module also holds the record -> data-info logic that
:class:`~hermes_mm.datasets.busi_dataset.BUSIDataset` reuses, so both data
sets produce identical data-info dicts (``docs/architecture.md``, "Data
info") and apply split files the same way.
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

from mmengine import fileio
from mmseg.datasets import BaseSegDataset

from hermes_mm.registry import DATASETS
from .splits import (ImageRecord, check_subset, load_split, resolve_split_file,
                     select_subset)


def _parse_label(value: object, cls_classes: Sequence[str],
                 where: str) -> int:
    """Turn an annotation ``label`` (absent, name or index) into an index.

    ``None`` and ``-1`` mean unknown (``-1``).
    """
    if value is None:
        return -1
    if isinstance(value, str):
        if value not in cls_classes:
            raise ValueError(f'{where}: unknown label {value!r}; expected '
                             f'one of cls_classes {list(cls_classes)}.')
        return list(cls_classes).index(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not -1 <= value < len(cls_classes):
            raise ValueError(
                f'{where}: label {value} out of range; expected an index in '
                f'[0, {len(cls_classes)}) into cls_classes '
                f'{list(cls_classes)}, or -1 for unknown.')
        return value
    raise ValueError(f'{where}: label must be a class name or index, got '
                     f'{value!r}.')


def read_ann_file(ann_file: str,
                  data_root: str,
                  cls_classes: Sequence[str],
                  backend_args: Optional[dict] = None) -> List[ImageRecord]:
    """Parse a JSON-lines annotation file into image records.

    Per line (blank lines skipped), paths relative to ``data_root``:

    - ``img`` (str, required): the image.
    - ``masks`` (list[str], optional): masks to OR-merge; ``[]`` means the
      image has no lesion; absent or ``null`` means no mask is known.
    - ``label`` (str or int, optional): a name in ``cls_classes`` or its
      index; absent, ``null`` or ``-1`` means unknown.

    Other keys are ignored. Records keep the file's line order.

    Args:
        ann_file (str): The annotation file.
        data_root (str): Folder the ``img``/``masks`` paths are relative to.
        cls_classes (Sequence[str]): Classification class names.
        backend_args (dict, optional): MMEngine file backend arguments.

    Returns:
        list[ImageRecord]: One record per line.

    Raises:
        FileNotFoundError: ``ann_file`` or a listed image/mask is missing.
        ValueError: Malformed JSON or fields, an unknown label name, a
            label index out of range, a duplicate image, or no line at all.
    """
    if not fileio.exists(ann_file, backend_args=backend_args):
        raise FileNotFoundError(f'Annotation file {ann_file!r} not found.')
    text = fileio.get_text(ann_file, backend_args=backend_args)
    records: List[ImageRecord] = []
    seen = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f'{ann_file}, line {lineno}'
        entry = parse_ann_json(line, where)
        img_rel = entry['img']
        if img_rel in seen:
            raise ValueError(f'{where}: image {img_rel!r} already listed on '
                             f'line {seen[img_rel]}.')
        seen[img_rel] = lineno
        records.append(
            ann_entry_record(entry, where, data_root, cls_classes,
                             backend_args))
    if not records:
        raise ValueError(f'Annotation file {ann_file!r} lists no image.')
    return records


def parse_ann_json(line: str, where: str) -> dict:
    """Parse one annotation line: a JSON object with an ``img`` string.

    Raises:
        ValueError: Invalid JSON or no ``img`` path; names ``where``.
    """
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f'{where}: invalid JSON ({err}).') from err
    if not isinstance(entry, dict) or not isinstance(entry.get('img'), str):
        raise ValueError(f'{where}: expected a JSON object with an '
                         f'"img" path string, got {line.strip()!r}.')
    return entry


def ann_entry_record(entry: dict,
                     where: str,
                     data_root: str,
                     cls_classes: Sequence[str],
                     backend_args: Optional[dict] = None) -> ImageRecord:
    """Check one parsed annotation entry and turn it into a record.

    Raises:
        FileNotFoundError: The image or a mask does not exist.
        ValueError: Bad ``masks`` or ``label``; names ``where``.
    """
    img_rel = entry['img']
    masks = entry.get('masks')
    if masks is not None and (not isinstance(masks, list) or not all(
            isinstance(m, str) for m in masks)):
        raise ValueError(f'{where}: "masks" must be a list of path '
                         f'strings, got {masks!r}.')
    for rel in [img_rel] + (masks or []):
        path = osp.join(data_root, rel)
        if not fileio.exists(path, backend_args=backend_args):
            raise FileNotFoundError(
                f'{where}: file {path!r} not found ({rel!r} is read '
                f'relative to data_root {data_root!r}).')
    return ImageRecord(
        img_rel=img_rel,
        mask_rels=None if masks is None else list(masks),
        gt_label=_parse_label(entry.get('label'), cls_classes, where))


@DATASETS.register_module()
class MultiTaskAnnotationDataset(BaseSegDataset):
    """Lesion segmentation + image classification from an annotation file.

    Produces the data-info dicts of ``docs/architecture.md`` (``img_path``,
    ``img_rel``, ``seg_map_paths``, ``has_mask``, ``gt_label``,
    ``label_name``, ``seg_fields``, ``reduce_zero_label``), to be loaded by
    ``LoadMultiTaskAnnotations``. See :func:`read_ann_file` for the file
    format.

    ``metainfo`` must give ``cls_classes`` (classification class names)
    and may give ``lesion_classes`` (the subset whose images hold a
    lesion). Segmentation ``classes``/``palette`` default to
    background/lesion.

    With ``split_file`` (JSON from ``tools/make_split.py``, paths equal to
    the ``img`` entries) and ``subset``, only that subset is kept:
    ``'labeled'``, ``'unlabeled'``, ``'val'``, ``'test'``, or ``'train'``
    (labelled + unlabelled); ``subset=None`` keeps every image. The split
    is checked against the dataset either way.

    Args:
        ann_file (str): JSON-lines annotation file, absolute or relative to
            ``data_root``.
        data_root (str): Folder the annotation paths are relative to.
        split_file (str, optional): Split JSON, absolute or relative to the
            current directory, else to ``data_root``. Defaults to None.
        subset (str, optional): Which split subset to keep. Defaults to
            None (all images).
        backend_args (dict, optional): MMEngine file backend arguments.
        **kwargs: Other :class:`mmseg.datasets.BaseSegDataset` arguments
            (``metainfo``, ``pipeline``, ``test_mode``, ``lazy_init``, ...).
            ``reduce_zero_label`` is always False.
    """

    METAINFO = dict(
        classes=('background', 'lesion'), palette=[[0, 0, 0], [255, 0, 0]])

    def __init__(self,
                 ann_file: str = '',
                 data_root: Optional[str] = None,
                 split_file: Optional[str] = None,
                 subset: Optional[str] = None,
                 backend_args: Optional[dict] = None,
                 **kwargs) -> None:
        if kwargs.pop('reduce_zero_label', False):
            raise ValueError(
                f'{type(self).__name__} does not support '
                f'reduce_zero_label=True: masks are binarised to '
                f'background 0 / lesion 1.')
        check_subset(subset, split_file)
        self.split_file = split_file
        self.subset = subset
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            backend_args=backend_args,
            reduce_zero_label=False,
            **kwargs)

    def _check_metainfo(self) -> List[str]:
        """Validate ``cls_classes``/``lesion_classes``; return the classes."""
        name = type(self).__name__
        cls_classes = self.metainfo.get('cls_classes')
        if (not isinstance(cls_classes, (list, tuple)) or not cls_classes
                or not all(isinstance(c, str) for c in cls_classes)):
            raise ValueError(
                f'{name} needs metainfo["cls_classes"], a non-empty list of '
                f'class names, e.g. metainfo=dict(cls_classes=("benign", '
                f'"malignant")); got {cls_classes!r}.')
        if len(set(cls_classes)) != len(cls_classes):
            raise ValueError(f'{name}: metainfo["cls_classes"] has '
                             f'duplicates: {list(cls_classes)}.')
        lesion = self.metainfo.get('lesion_classes', ())
        if not set(lesion) <= set(cls_classes):
            raise ValueError(
                f'{name}: metainfo["lesion_classes"] {list(lesion)} must be '
                f'a subset of cls_classes {list(cls_classes)}; override '
                f'both together.')
        return list(cls_classes)

    def load_records(self, cls_classes: Sequence[str]) -> List[ImageRecord]:
        """Read every image of the data set (the whole annotation file)."""
        if not self.ann_file:
            raise ValueError(f'{type(self).__name__} needs an ann_file.')
        return read_ann_file(self.ann_file, self._root(), cls_classes,
                             self.backend_args)

    def _root(self) -> str:
        """``data_root``, required since every path is relative to it."""
        if self.data_root is None:
            raise ValueError(f'{type(self).__name__} needs a data_root: '
                             f'image and mask paths are relative to it.')
        return self.data_root

    def load_data_list(self) -> List[dict]:
        """Load the records, keep the split subset, make data-info dicts.

        Returns:
            list[dict]: One data-info dict per image (see the class
            docstring).
        """
        cls_classes = self._check_metainfo()
        records = self.load_records(cls_classes)
        if self.split_file is not None:
            path = resolve_split_file(self.split_file, self.data_root)
            records = select_subset(
                records,
                load_split(path),
                self.subset,
                cls_classes,
                source=f'Split file {path!r}')
        root = self._root()
        return [
            dict(
                img_path=osp.join(root, rec.img_rel),
                img_rel=rec.img_rel,
                seg_map_paths=[osp.join(root, m) for m in rec.mask_rels or []],
                has_mask=rec.mask_rels is not None,
                gt_label=rec.gt_label,
                label_name=cls_classes[rec.gt_label]
                if rec.gt_label >= 0 else '',
                seg_fields=[],
                reduce_zero_label=False) for rec in records
        ]
