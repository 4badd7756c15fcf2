"""Find every problem of a data set at once, before training on it.

The datasets and loaders stop at the first problem they meet (the right
behaviour for training). :func:`check_busi_folder` and
:func:`check_ann_file` instead read every file, collect every problem, and
return them as :class:`Problem` records; ``tools/check_dataset.py`` prints
them and writes the JSON report. They use the same rules as training
(:func:`~hermes_mm.datasets.splits.group_class_files`,
:func:`~hermes_mm.datasets.transforms.loading.decode_mask`, the split
checks of :mod:`hermes_mm.datasets.splits`) and only read files.

Besides what training would reject, they report defects found in the
public BUSI release (https://doi.org/10.1016/j.dib.2019.104863) that
training cannot see: exact duplicate images (same pixels, whatever the
file bytes), the same image filed under two classes, and masks with values
other than 0/255.
"""
import hashlib
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .annotation_dataset import ann_entry_record, parse_ann_json
from .splits import (SPLIT_KEYS, ImageRecord, check_split_form,
                     classes_without_labelled, group_class_files,
                     no_labelled_message, repeat_message, split_repeats,
                     unknown_split_paths)
from hermes_mm.utils.image_io import (decode_image, describe_orientation,
                                      exif_orientation, raw_bit_range,
                                      source_bit_depth)
from .transforms.loading import (decode_mask, describe_values,
                                 nonbinary_values, orientation_hint)

#: A 16-bit image whose maximum is below this fraction of 65535 is
#: reported (``low_bit_depth``): OpenCV's 8-bit conversion (/256) would
#: have made it near-black.
LOW_RANGE_FRACTION = 1 / 8

#: Every problem kind, with what it means (the JSON report's ``kind``).
PROBLEM_KINDS: Dict[str, str] = {
    'data_root': 'data root missing, not a folder, or empty',
    'unknown_class_folder': 'a folder holding images is not a class',
    'missing_class_folder': 'a class has no folder',
    'empty_class_folder': 'a class folder holds no image',
    'not_image_or_mask': 'a file or folder that is neither image nor mask',
    'same_stem': 'two images share a name stem (a.png, a.jpg)',
    'missing_mask': 'an image has no mask',
    'orphan_mask': 'a mask has no image',
    'undecodable': 'an image or mask cannot be decoded',
    'mask_size_mismatch': 'a mask differs in size from its image',
    'mask_not_binary': 'a mask holds values other than 0 and 255',
    'exif_orientation': 'an image carries an EXIF orientation tag '
    '(ignored: images and masks are read as stored)',
    'low_bit_depth': 'a 16-bit image uses less than 1/8 of its range '
    '(e.g. 12-bit data; scaled by its bit depth)',
    'duplicate_image': 'the same image content twice in one class',
    'cross_class_duplicate': 'the same image content under two classes',
    'annotation': 'a line of the annotation file is invalid',
    'split': 'the split file is invalid or does not fit the data set',
}

DEFAULT_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


@dataclass
class Problem:
    """One problem of a data set.

    Attributes:
        kind (str): A key of :data:`PROBLEM_KINDS`.
        path (str): The file or folder, relative to the data root (POSIX),
            or the split / annotation file as given.
        message (str): What is wrong and what was expected.
        related (list[str]): Other files involved (e.g. the duplicates).
    """
    kind: str
    path: str
    message: str
    related: List[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Everything :func:`check_busi_folder` / :func:`check_ann_file` found.

    Attributes:
        data_root (str): The checked folder.
        num_images (int): Images found.
        num_masks (int): Mask files found.
        problems (list[Problem]): In the order found.
    """
    data_root: str
    num_images: int = 0
    num_masks: int = 0
    problems: List[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def add(self, kind: str, path: str, message: str,
            related: Sequence[str] = ()) -> None:
        assert kind in PROBLEM_KINDS, kind
        self.problems.append(Problem(kind, path, message, list(related)))

    def counts(self) -> Dict[str, int]:
        """Problem kind -> how many."""
        out: Dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out

    def to_dict(self) -> dict:
        """The JSON report."""
        return dict(
            data_root=self.data_root,
            clean=self.clean,
            num_images=self.num_images,
            num_masks=self.num_masks,
            counts=self.counts(),
            problems=[asdict(p) for p in self.problems])


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError:
        return None


def _decode_image(data: Optional[bytes]) -> Optional[np.ndarray]:
    """Decode as ``LoadImageAsStored`` does (the hermes_mm pipelines'
    image loader); None if not decodable."""
    if not data:
        return None
    return decode_image(data, 'color')


class _FileChecker:
    """Reads images and masks once each, recording problems and hashes."""

    def __init__(self, report: CheckReport, root: str) -> None:
        self.report = report
        self.root = root
        # pixel digest -> [(img_rel, class name, file digest)]
        self.contents: Dict[str, List[Tuple[str, str, str]]] = {}
        # img_rel -> file content, for the EXIF hint of a size mismatch
        self.image_data: Dict[str, bytes] = {}

    def image(self, rel: str, cls_name: str) -> Optional[Tuple[int, int]]:
        """Check an image; return its (H, W) if decodable."""
        data = _read(osp.join(self.root, rel))
        img = _decode_image(data)
        if img is None:
            size = 'unreadable' if data is None else f'{len(data)} bytes'
            self.report.add(
                'undecodable', rel,
                f'image could not be decoded ({size}); expected a complete '
                f'PNG, JPEG, BMP or TIFF image.')
            return None
        self._encoding(rel, data, img)
        pixels = hashlib.sha256(
            str(img.shape).encode() + img.tobytes()).hexdigest()
        self.contents.setdefault(pixels, []).append(
            (rel, cls_name, hashlib.sha256(data).hexdigest()))
        return img.shape[:2]

    def _encoding(self, rel: str, data: bytes, img: np.ndarray) -> None:
        """Report an EXIF orientation tag and 16-bit data using little of
        its range."""
        orientation = exif_orientation(data)
        if orientation != 1:
            self.image_data[rel] = data
            self.report.add(
                'exif_orientation', rel,
                f'image carries {describe_orientation(orientation)}; '
                f'hermes_mm ignores it for images and masks alike (read as '
                f'stored, {img.shape[0]}x{img.shape[1]} HxW), so its masks '
                f'must match the stored pixels, not the rotated view.')
        bit_range = raw_bit_range(data)
        if bit_range and bit_range[0] == 16 and bit_range[1] < (
                LOW_RANGE_FRACTION * np.iinfo(np.uint16).max):
            peak = bit_range[1]
            bits = source_bit_depth(np.array([peak], np.uint16))
            self.report.add(
                'low_bit_depth', rel,
                f'16-bit image uses values up to {peak}, less than 1/8 of '
                f'its range (65535); training scales it as {bits}-bit data '
                f'(full scale {(1 << bits) - 1} -> 255), where OpenCV\'s '
                f'8-bit conversion (/256) gives a near-black image. '
                f'Expected: check that {bits}-bit is the bit depth the '
                f'scanner wrote.')

    def mask(self, rel: str, img_rel: str,
             img_shape: Optional[Tuple[int, int]]) -> None:
        """Check a mask: decodable, binary, same size as its image."""
        data = _read(osp.join(self.root, rel))
        try:
            mask = decode_mask(data or b'', rel)
        except ValueError as err:
            self.report.add('undecodable', rel,
                            f'{err} Expected a 0/255 lesion mask image.')
            return
        if img_shape is not None and mask.shape != tuple(img_shape):
            self.report.add(
                'mask_size_mismatch', rel,
                f'mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its '
                f'image {img_rel!r} is {img_shape[0]}x{img_shape[1]}; '
                f'expected the same size.' + orientation_hint(
                    self.image_data.get(img_rel), mask.shape, img_shape),
                [img_rel])
        odd = nonbinary_values(mask)
        if len(odd):
            full = np.iinfo(mask.dtype).max
            self.report.add(
                'mask_not_binary', rel,
                f'mask is not binary: besides 0 and {full} it holds '
                f'{describe_values(odd)} in '
                f'{int(np.isin(mask, odd).sum())} pixel(s); training reads '
                f'values > 127 (8-bit scale) as lesion.')

    def duplicates(self) -> None:
        """Report groups of images with identical pixels."""
        for entries in self.contents.values():
            if len(entries) < 2:
                continue
            rels = [rel for rel, _, _ in entries]
            classes = sorted({cls for _, cls, _ in entries})
            same_bytes = len({digest for _, _, digest in entries}) == 1
            how = 'identical files' if same_bytes else (
                'identical pixels (different files)')
            if len(classes) > 1:
                self.report.add(
                    'cross_class_duplicate', rels[0],
                    f'the same image is filed under classes {classes} '
                    f'({how}): {rels}; expected each image in one class '
                    f'only (its label is ambiguous).', rels[1:])
            else:
                self.report.add(
                    'duplicate_image', rels[0],
                    f'{len(rels)} copies of one image in class '
                    f'{classes[0]!r} ({how}): {rels}; expected each image '
                    f'once (a copy can land in both train and test).',
                    rels[1:])


def check_busi_folder(data_root: str,
                      cls_classes: Sequence[str],
                      split_file: Optional[str] = None,
                      img_suffixes: Sequence[str] = DEFAULT_SUFFIXES,
                      mask_token: str = '_mask') -> CheckReport:
    """Check a raw BUSI-layout folder (see :func:`~hermes_mm.datasets.
    splits.scan_busi`) and, optionally, a split file against it.

    Args:
        data_root (str): The data set folder.
        cls_classes (Sequence[str]): Class folder names.
        split_file (str, optional): Split JSON to check.
        img_suffixes (Sequence[str]): Image/mask suffixes.
        mask_token (str): Stem suffix of mask files.

    Returns:
        CheckReport: Every problem found.
    """
    report = CheckReport(data_root)
    if not osp.isdir(data_root):
        report.add('data_root', data_root,
                   f'data root does not exist or is not a folder; expected '
                   f'one sub-folder per class {list(cls_classes)}.')
        return report
    entries = sorted(os.scandir(data_root), key=lambda e: e.name)
    if not entries:
        report.add('data_root', '.',
                   f'data root {data_root!r} is empty; expected one '
                   f'sub-folder per class {list(cls_classes)}.')
        return report
    checker = _FileChecker(report, data_root)
    records: List[ImageRecord] = []
    for entry in entries:
        if (entry.is_dir() and not entry.name.startswith('.')
                and entry.name not in cls_classes):
            files = [e.name for e in os.scandir(entry.path) if e.is_file()]
            if group_class_files(files, img_suffixes, mask_token).names():
                report.add(
                    'unknown_class_folder', entry.name,
                    f'folder holds images but {entry.name!r} is not one of '
                    f'the classes {list(cls_classes)}; expected only class '
                    f'folders (or pass --cls-classes).')
    for label, cls_name in enumerate(cls_classes):
        folder = osp.join(data_root, cls_name)
        if not osp.isdir(folder):
            report.add('missing_class_folder', cls_name,
                       f'class folder not found; expected a folder per '
                       f'class {list(cls_classes)} under the data root.')
            continue
        listing = sorted(os.scandir(folder), key=lambda e: e.name)
        for sub in listing:
            if not sub.is_file():
                report.add(
                    'not_image_or_mask', f'{cls_name}/{sub.name}',
                    'a folder inside a class folder; expected only images '
                    'and masks (sub-folders are not read).')
        groups = group_class_files([e.name for e in listing if e.is_file()],
                                   img_suffixes, mask_token)
        for name in groups.others:
            report.add(
                'not_image_or_mask', f'{cls_name}/{name}',
                f'neither an image nor a mask; expected a suffix in '
                f'{list(img_suffixes)}.')
        if not groups.images:
            report.add('empty_class_folder', cls_name,
                       f'class folder holds no image with a suffix in '
                       f'{list(img_suffixes)}.')
        for stem, masks in groups.masks.items():
            report.num_masks += len(masks)
            if stem not in groups.images:
                for mask in masks:
                    report.add(
                        'orphan_mask', f'{cls_name}/{mask}',
                        f'mask without an image; expected an image '
                        f'{stem!r} with a suffix in {list(img_suffixes)} '
                        f'next to it.')
        for stem, names in groups.images.items():
            if len(names) > 1:
                report.add(
                    'same_stem', f'{cls_name}/{names[0]}',
                    f'images {names} share the stem {stem!r}, so their '
                    f'masks are ambiguous; expected one image per stem.',
                    [f'{cls_name}/{n}' for n in names[1:]])
            for name in names:
                rel = f'{cls_name}/{name}'
                report.num_images += 1
                shape = checker.image(rel, cls_name)
                masks = groups.masks.get(stem)
                if not masks:
                    report.add(
                        'missing_mask', rel,
                        f'image has no mask; expected '
                        f'{stem + mask_token + ".png"!r} (any suffix of '
                        f'{list(img_suffixes)}) next to it.')
                for mask in masks or []:
                    checker.mask(f'{cls_name}/{mask}', rel, shape)
                records.append(
                    ImageRecord(rel, [f'{cls_name}/{m}' for m in masks or []],
                                label))
    if report.num_images == 0 and not any(
            p.kind in ('missing_class_folder', 'unknown_class_folder')
            for p in report.problems):
        report.add('data_root', '.', f'data root {data_root!r} holds no '
                   f'image; expected images in {list(cls_classes)}.')
    checker.duplicates()
    if split_file is not None:
        check_split_file(report, split_file, records, cls_classes)
    return report


def check_ann_file(data_root: str,
                   ann_file: str,
                   cls_classes: Sequence[str],
                   split_file: Optional[str] = None) -> CheckReport:
    """Check a JSON-lines annotation data set (every line, every file).

    Args:
        data_root (str): Folder the annotation paths are relative to.
        ann_file (str): The annotation file.
        cls_classes (Sequence[str]): Class names the labels refer to.
        split_file (str, optional): Split JSON to check.

    Returns:
        CheckReport: Every problem found.
    """
    report = CheckReport(data_root)
    if not osp.isdir(data_root):
        report.add('data_root', data_root,
                   'data root does not exist or is not a folder.')
        return report
    try:
        with open(ann_file, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except OSError as err:
        report.add('annotation', ann_file,
                   f'annotation file could not be read ({err}).')
        return report
    checker = _FileChecker(report, data_root)
    records: List[ImageRecord] = []
    seen: Dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f'{ann_file}, line {lineno}'
        try:
            entry = parse_ann_json(line, where)
            if entry['img'] in seen:
                raise ValueError(
                    f'{where}: image {entry["img"]!r} already listed on '
                    f'line {seen[entry["img"]]}.')
            seen[entry['img']] = lineno
            record = ann_entry_record(entry, where, data_root, cls_classes)
        except (ValueError, FileNotFoundError) as err:
            report.add('annotation', ann_file, str(err))
            continue
        records.append(record)
        report.num_images += 1
        report.num_masks += len(record.mask_rels or [])
        cls_name = (cls_classes[record.gt_label]
                    if record.gt_label >= 0 else '(unknown)')
        shape = checker.image(record.img_rel, cls_name)
        for mask in record.mask_rels or []:
            checker.mask(mask, record.img_rel, shape)
    if not lines or not any(line.strip() for line in lines):
        report.add('annotation', ann_file, 'annotation file lists no image.')
    checker.duplicates()
    if split_file is not None:
        check_split_file(report, split_file, records, cls_classes)
    return report


def check_split_file(report: CheckReport, split_file: str,
                     records: Sequence[ImageRecord],
                     cls_classes: Sequence[str]) -> None:
    """Add every problem of ``split_file`` (against ``records``)."""
    source = f'Split file {split_file!r}'
    try:
        with open(split_file, encoding='utf-8') as f:
            split = json.load(f)
    except OSError as err:
        report.add('split', split_file, f'{source} could not be read: {err}.')
        return
    except ValueError as err:  # json.JSONDecodeError
        report.add('split', split_file,
                   f'{source} is not valid JSON: {err}; expected the output '
                   f'of tools/make_split.py.')
        return
    try:
        check_split_form(split, source)
    except ValueError as err:
        report.add('split', split_file, str(err))
        return
    for path, keys in split_repeats(split).items():
        report.add('split', split_file, repeat_message(source, path, keys))
    for path in unknown_split_paths(records, split):
        keys = [k for k in SPLIT_KEYS if path in split[k]]
        report.add(
            'split', split_file,
            f'{source}: {path!r} (in {keys}) is not an image of the data '
            f'set; expected paths relative to the data root, POSIX '
            f'separators.')
    # A split without train images (make_split --ratios 0 0 1) is a test-
    # only split: no training run reads its empty labeled list.
    has_train = bool(split['labeled'] or split['unlabeled'])
    missing = classes_without_labelled(records, split) if has_train else []
    if missing:
        report.add('split', split_file,
                   no_labelled_message(source, missing, cls_classes))


class DatasetFileError(ValueError):
    """Files of a configured dataset cannot be decoded (found at start-up)."""


#: Data loaders whose datasets :func:`check_config_files` reads.
CHECKED_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: How many bad files a start-up error lists.
MAX_FILES_LISTED = 10


def _file_problem(path: str, kind: str) -> Optional[str]:
    """Why ``path`` (an image or mask) cannot be decoded; None if it can."""
    data = _read(path)
    if data is None:
        return f'{kind} {path!r} cannot be read'
    if kind == 'image':
        if _decode_image(data) is None:
            return (f'image {path!r} ({len(data)} bytes) could not be '
                    f'decoded; expected a complete PNG, JPEG, BMP or TIFF')
        return None
    try:
        decode_mask(data, path)
    except ValueError as err:
        return f'{err} ({len(data)} bytes)'
    return None


def check_config_files(cfg, loaders: Sequence[str] = CHECKED_LOADERS
                       ) -> List[str]:
    """Decode every image and mask of every dataset of ``cfg``.

    Training meets a bad file only when a batch or a validation reaches it
    (iteration 1000 for a 0-byte validation mask); this reads them all at
    start-up (seconds for BUSI-sized sets). Each leaf dataset (wrappers
    such as ``ConcatDataset`` are walked into) is built without its
    pipeline, and each data info's ``img_path`` and ``seg_map_paths`` are
    decoded as training decodes them. Files are read, never written.

    Args:
        cfg (Config): The training config.
        loaders (Sequence[str]): Data loader keys to check.

    Returns:
        list[str]: One line per bad file, naming the dataset (empty if
        every file decodes).
    """
    import copy

    from mmengine.registry import DefaultScope, init_default_scope

    from hermes_mm.registry import DATASETS
    from hermes_mm.utils import iter_loader_datasets
    if DefaultScope.get_current_instance() is None:
        init_default_scope(cfg.get('default_scope', 'mmseg'))
    problems: List[str] = []
    seen = set()
    for path, ds_cfg in iter_loader_datasets(cfg, tuple(loaders)):
        if 'dataset' in ds_cfg or 'datasets' in ds_cfg:
            continue  # a wrapper: its leaves follow
        ds_cfg = copy.deepcopy(dict(ds_cfg))
        ds_cfg['pipeline'] = []
        dataset = DATASETS.build(ds_cfg)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            files = [(info.get('img_path'), 'image')] + [
                (m, 'mask') for m in info.get('seg_map_paths') or []]
            for file, kind in files:
                if not isinstance(file, str) or file in seen:
                    continue
                seen.add(file)
                problem = _file_problem(file, kind)
                if problem:
                    problems.append(f'[{path} ({ds_cfg["type"]})] '
                                    f'{problem}')
    return problems


def raise_for_config_files(cfg) -> None:
    """:func:`check_config_files`, raising :class:`DatasetFileError`."""
    problems = check_config_files(cfg)
    if not problems:
        return
    more = (f'\n... and {len(problems) - MAX_FILES_LISTED} more'
            if len(problems) > MAX_FILES_LISTED else '')
    raise DatasetFileError(
        f'{len(problems)} file(s) of the configured datasets cannot be '
        f'decoded (checked at start-up, before training):\n' +
        '\n'.join(problems[:MAX_FILES_LISTED]) + more +
        '\nFix or remove them (tools/check_dataset.py DATA_ROOT lists '
        'every problem of a data set).')


__all__ = [
    'CheckReport', 'DatasetFileError', 'PROBLEM_KINDS', 'Problem',
    'check_ann_file', 'check_busi_folder', 'check_config_files',
    'check_split_file', 'raise_for_config_files'
]
