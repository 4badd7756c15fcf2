"""Label splits: stratified labelled / unlabelled / val / test partitions.

A split file is the JSON written by ``tools/make_split.py`` (see
``DESIGN.md`` §3)::

    {"labeled": [...], "unlabeled": [...], "val": [...], "test": [...]}

Each list holds image paths relative to the data root with POSIX separators
(the ``img_rel`` data-info key), e.g. ``"benign/benign (12).png"``.

Everything here is a pure function of its arguments (no registry, no
global state), so the datasets and the command-line tool share one
implementation: :func:`scan_busi` (raw BUSI folder layout),
:func:`make_split`, :func:`save_split` / :func:`load_split`, and
:func:`select_subset` (which images of a dataset a ``subset`` keeps).

Stratifying by class matters on BUSI: with an unstratified draw, a 1/8
labelled set is often all-benign (``DESIGN.md`` §5).
"""
import json
import math
import os
import os.path as osp
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

#: The subsets a split file holds, in file order.
SPLIT_KEYS: Tuple[str, ...] = ('labeled', 'unlabeled', 'val', 'test')

#: ``subset`` names a dataset accepts, each mapped to the split keys it
#: unions. ``'train'`` is every training image, labelled or not.
SUBSETS: Dict[str, Tuple[str, ...]] = {
    'labeled': ('labeled', ),
    'unlabeled': ('unlabeled', ),
    'val': ('val', ),
    'test': ('test', ),
    'train': ('labeled', 'unlabeled'),
}

#: How many offending paths an error message lists before summarising.
MAX_LISTED = 10


class ImageRecord(NamedTuple):
    """One image of a dataset, before it becomes a data-info dict.

    Attributes:
        img_rel (str): Image path relative to the data root, POSIX
            separators.
        mask_rels (list[str], optional): Mask paths relative to the data
            root, to be OR-merged. ``[]`` means "no lesion"; ``None`` means
            no mask is known.
        gt_label (int): Class index into ``cls_classes``, ``-1`` if unknown.
    """
    img_rel: str
    mask_rels: Optional[List[str]]
    gt_label: int


def natural_key(name: str) -> Tuple[list, str]:
    """Sort key that orders digit runs by value: ``'a (2)' < 'a (10)'``.

    Text runs compare case-insensitively; the raw name breaks ties so the
    order is total and does not depend on the file system.
    """
    # re.split with a capturing group alternates text / digits, starting
    # with text, so the same position always holds the same type.
    tokens = [
        int(tok) if i % 2 else tok.lower()
        for i, tok in enumerate(re.split(r'(\d+)', name))
    ]
    return tokens, name


def _listing(paths: Sequence[str], limit: int = MAX_LISTED) -> str:
    """Render at most ``limit`` paths, then how many were left out."""
    shown = ', '.join(repr(p) for p in list(paths)[:limit])
    rest = len(paths) - limit
    return shown + (f' ... and {rest} more' if rest > 0 else '')


class ClassFolderFiles(NamedTuple):
    """The files of one BUSI class folder, by role.

    Attributes:
        images (dict[str, list[str]]): Image stem -> file names (more than
            one when e.g. ``a.png`` and ``a.jpg`` share the stem).
        masks (dict[str, list[str]]): Image stem -> its mask file names.
        others (list[str]): Files that are neither (wrong suffix).
    """
    images: Dict[str, List[str]]
    masks: Dict[str, List[str]]
    others: List[str]

    def names(self) -> List[str]:
        """Every image and mask file name."""
        return [n for group in (self.images, self.masks)
                for names in group.values() for n in names]


def group_class_files(names: Sequence[str],
                      img_suffixes: Sequence[str] = ('.png', '.jpg', '.jpeg',
                                                     '.bmp', '.tif', '.tiff'),
                      mask_token: str = '_mask') -> ClassFolderFiles:
    """Sort the file names of a class folder into images, masks, others.

    A file with a suffix in ``img_suffixes`` (case-insensitive) is a mask
    when its stem ends in ``mask_token`` or ``mask_token + '_<K>'`` (the
    mask of the image whose stem precedes it), else an image. Order within
    each list follows ``names``.
    """
    suffixes = tuple(s.lower() for s in img_suffixes)
    mask_re = re.compile(re.escape(mask_token) + r'(?:_\d+)?$')
    images: Dict[str, List[str]] = {}
    masks: Dict[str, List[str]] = {}
    others: List[str] = []
    for fname in names:
        if not fname.lower().endswith(suffixes):
            others.append(fname)
            continue
        stem = osp.splitext(fname)[0]
        match = mask_re.search(stem)
        if match:
            masks.setdefault(stem[:match.start()], []).append(fname)
        else:
            images.setdefault(stem, []).append(fname)
    return ClassFolderFiles(images, masks, others)


def scan_busi(data_root: str,
              cls_classes: Sequence[str],
              img_suffixes: Sequence[str] = ('.png', '.jpg', '.jpeg', '.bmp',
                                             '.tif', '.tiff'),
              mask_token: str = '_mask') -> List[ImageRecord]:
    """List the images of a raw BUSI-layout folder with their masks.

    Layout: one folder per class directly under ``data_root``; in it
    images (``benign (3).png``) and their masks (``benign (3)_mask.png``
    and optionally ``benign (3)_mask_1.png``, ``_mask_2`` ...). A file is a
    mask when its stem ends in ``mask_token`` or ``mask_token + '_<K>'``.
    Only the class folders' own files are read (no recursion); folders
    whose name starts with ``.`` are ignored.

    Args:
        data_root (str): The data set folder (local file system).
        cls_classes (Sequence[str]): Class folder names; their order gives
            the class indices.
        img_suffixes (Sequence[str]): File extensions (case-insensitive)
            of images and masks. Defaults to common image formats.
        mask_token (str): Stem suffix marking a mask. Defaults to
            ``'_mask'``.

    Returns:
        list[ImageRecord]: Sorted by class order, then by natural file-name
        order; each record's ``mask_rels`` is non-empty and sorted
        (``_mask``, ``_mask_1``, ``_mask_2``, ...).

    Raises:
        FileNotFoundError: ``data_root`` or a class folder is missing, or an
            image has no mask.
        ValueError: ``data_root`` holds no images, a folder holding images
            is not a class, or a class folder holds no image.
    """
    if not osp.isdir(data_root):
        raise FileNotFoundError(
            f'BUSI data_root {data_root!r} does not exist or is not a '
            f'directory; expected a folder with one sub-folder per class '
            f'{list(cls_classes)}.')

    def image_files(folder: str) -> ClassFolderFiles:
        with os.scandir(folder) as entries:
            files = [e.name for e in entries if e.is_file()]
        return group_class_files(files, img_suffixes, mask_token)

    subdirs = sorted(e.name for e in os.scandir(data_root)
                     if e.is_dir() and not e.name.startswith('.'))
    for name in subdirs:
        if name not in cls_classes and image_files(osp.join(
                data_root, name)).names():
            raise ValueError(
                f'Folder {osp.join(data_root, name)!r} holds images but '
                f'{name!r} is not one of the expected classes '
                f'{list(cls_classes)}. Move it out of data_root, or set '
                f'the classes with metainfo=dict(cls_classes=(...), '
                f'lesion_classes=(...)) (tools/make_split.py: '
                f'--cls-classes).')

    records: List[ImageRecord] = []
    for label, cls_name in enumerate(cls_classes):
        folder = osp.join(data_root, cls_name)
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'Class folder {folder!r} not found; expected one folder per '
                f'class {list(cls_classes)} directly under {data_root!r} '
                f'(found sub-folders: {subdirs}).')
        groups = image_files(folder)
        # One image per stem (the last listed, as the file system lists).
        images = {stem: names[-1] for stem, names in groups.images.items()}
        masks = groups.masks
        if not images:
            raise ValueError(
                f'Class folder {folder!r} holds no image with a suffix in '
                f'{list(img_suffixes)}.')
        for stem in sorted(images, key=natural_key):
            if stem not in masks:
                raise FileNotFoundError(
                    f'Image {osp.join(folder, images[stem])!r} has no mask; '
                    f'expected {stem + mask_token + ".png"!r} (any suffix '
                    f'of {list(img_suffixes)}) next to it.')
            records.append(
                ImageRecord(
                    img_rel=f'{cls_name}/{images[stem]}',
                    mask_rels=[
                        f'{cls_name}/{m}'
                        for m in sorted(masks[stem], key=natural_key)
                    ],
                    gt_label=label))
    if not records:
        raise ValueError(f'BUSI data_root {data_root!r} holds no images.')
    return records


def _split_counts(n: int, ratios: Sequence[float]) -> List[int]:
    """Share ``n`` items among subsets in proportion to ``ratios``.

    Largest-remainder rounding: every subset gets ``floor(r * n)``, the
    items left over go one each to the largest fractional parts (ties to
    the earlier subset), so the counts always sum to ``n``. Then, when
    ``n >= len(ratios)``, every subset with a positive ratio that got
    nothing takes one item from the largest subset; and the first
    (training) subset always gets at least one item when ``n >= 1`` and
    its ratio is positive.
    """
    exact = [r * n for r in ratios]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(ratios)), key=lambda i: (counts[i] - exact[i],
                                                      i))
    for i in order[:n - sum(counts)]:
        counts[i] += 1
    must_have = [i for i, r in enumerate(ratios) if r > 0]
    if n < len(ratios):
        must_have = [0] if n >= 1 and ratios[0] > 0 else []
    for i in must_have:
        if counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def make_split(items: Sequence[Tuple[str, int]],
               labeled_ratio: float,
               seed: int,
               ratios: Sequence[float] = (0.7, 0.1, 0.2),
               num_classes: Optional[int] = None) -> Dict[str, List[str]]:
    """Split a labelled image list into labelled/unlabelled/val/test.

    Per class ``c`` with ``n_c`` images (stratified):

    1. The class's paths are sorted, then permuted by a
       ``numpy.random.default_rng(seed)`` generator (classes in index order
       draw from the same generator), so the input order does not matter.
    2. train / val / test take the first ``n_train``, next ``n_val`` and
       last ``n_test`` of the permutation, counts from ``ratios`` by
       largest-remainder rounding (they sum to ``n_c``). A class with at
       least 3 images has at least one in each subset with a positive
       ratio; every class has at least one train image unless the train
       ratio is 0 (a test-only split: ``labeled``/``unlabeled`` empty,
       ``labeled_ratio`` unused).
    3. The first ``max(1, floor(labeled_ratio * n_train + 0.5))`` train
       images (round half up) are labelled, the rest unlabelled.

    The permutation does not depend on ``labeled_ratio``, so for a fixed
    seed val/test are the same for every ratio and a smaller ratio's
    labelled set is contained in a larger ratio's.

    Args:
        items (Sequence[tuple[str, int]]): ``(relative image path, class
            index)`` pairs; paths must be unique.
        labeled_ratio (float): Fraction of each class's train images that
            keep their labels, in ``(0, 1]``.
        seed (int): Seed of the random permutation.
        ratios (Sequence[float]): train / val / test fractions, each >= 0,
            summing to 1; train 0 makes an evaluation-only split. Defaults
            to ``(0.7, 0.1, 0.2)``.
        num_classes (int, optional): Number of classes. Defaults to
            ``max(class index) + 1``. Every class must have an image.

    Returns:
        dict[str, list[str]]: Keys exactly ``labeled``, ``unlabeled``,
        ``val``, ``test``; each a sorted list of paths.

    Raises:
        ValueError: A bad ``labeled_ratio``/``ratios``, a duplicate path,
            a class index outside ``[0, num_classes)``, or a class with no
            train image.
    """
    if not 0 < labeled_ratio <= 1:
        raise ValueError(
            f'labeled_ratio must be in (0, 1], got {labeled_ratio!r}.')
    ratios = [float(r) for r in ratios]
    if (len(ratios) != 3 or min(ratios) < 0
            or not math.isclose(sum(ratios), 1.0)):
        raise ValueError(
            f'ratios must be 3 non-negative train/val/test fractions '
            f'summing to 1, got {ratios} (sum {sum(ratios)}).')
    items = [(str(path), int(label)) for path, label in items]
    if num_classes is None:
        num_classes = max((label for _, label in items), default=-1) + 1
    by_class: List[List[str]] = [[] for _ in range(num_classes)]
    seen = set()
    for path, label in items:
        if path in seen:
            raise ValueError(f'Duplicate image path {path!r} in items.')
        seen.add(path)
        if not 0 <= label < num_classes:
            raise ValueError(
                f'Image {path!r} has class index {label}; expected one in '
                f'[0, {num_classes}) (unknown labels cannot be stratified).')
        by_class[label].append(path)

    rng = np.random.default_rng(seed)
    split: Dict[str, List[str]] = {key: [] for key in SPLIT_KEYS}
    for label, paths in enumerate(by_class):
        paths = sorted(paths)
        n_train, n_val, _ = _split_counts(len(paths), ratios)
        if n_train == 0 and ratios[0] > 0:
            raise ValueError(
                f'Class index {label} has no train image ({len(paths)} '
                f'images in total); every class needs at least one.')
        perm = [paths[i] for i in rng.permutation(len(paths))]
        train = perm[:n_train]
        n_lab = min(n_train, max(1, math.floor(labeled_ratio * n_train +
                                               0.5)))
        split['labeled'] += train[:n_lab]
        split['unlabeled'] += train[n_lab:]
        split['val'] += perm[n_train:n_train + n_val]
        split['test'] += perm[n_train + n_val:]
    return {key: sorted(paths) for key, paths in split.items()}


def check_split_form(split: object, source: str = 'split') -> None:
    """Check that ``split`` is a dict of exactly :data:`SPLIT_KEYS`, each a
    list of path strings.

    Raises:
        ValueError: It is not; the message names ``source`` and the key.
    """
    if not isinstance(split, dict):
        raise ValueError(f'{source}: expected a JSON object with keys '
                         f'{list(SPLIT_KEYS)}, got {type(split).__name__}.')
    missing = [k for k in SPLIT_KEYS if k not in split]
    unknown = [k for k in split if k not in SPLIT_KEYS]
    if missing or unknown:
        raise ValueError(f'{source}: expected exactly the keys '
                         f'{list(SPLIT_KEYS)}; missing {missing}, unknown '
                         f'{unknown}.')
    for key in SPLIT_KEYS:
        paths = split[key]
        if not isinstance(paths, list) or not all(
                isinstance(p, str) for p in paths):
            raise ValueError(f'{source}: {key!r} must be a list of image '
                             f'path strings.')


def split_repeats(split: Dict[str, List[str]]) -> Dict[str, List[str]]:
    """Paths listed more than once, each with the subsets listing it.

    Args:
        split (dict): A split of the right form (:func:`check_split_form`).

    Returns:
        dict[str, list[str]]: Path -> subset keys, one entry per listing
        (``['labeled', 'val']``, or ``['test', 'test']`` for a repeat in
        one subset), in split-file order.
    """
    where: Dict[str, List[str]] = {}
    for key in SPLIT_KEYS:
        for path in split[key]:
            where.setdefault(path, []).append(key)
    return {path: keys for path, keys in where.items() if len(keys) > 1}


def repeat_message(source: str, path: str, keys: Sequence[str]) -> str:
    """The error for a path listed in ``keys`` (two or more listings)."""
    return (f'{source}: image {path!r} is listed in both {keys[0]!r} and '
            f'{keys[1]!r}; each image may be in one subset, once.')


def validate_split(split: object,
                   source: str = 'split') -> Dict[str, List[str]]:
    """Check a split's form and return it as ``{key: list[str]}``.

    Args:
        split (object): The parsed split.
        source (str): What to call it in error messages (e.g. its path).

    Returns:
        dict[str, list[str]]: The split, keys in :data:`SPLIT_KEYS` order.

    Raises:
        ValueError: Not a dict with exactly the keys :data:`SPLIT_KEYS`,
            a value that is not a list of strings, or a path listed twice
            (in one subset or in two).
    """
    check_split_form(split, source)
    for path, keys in split_repeats(split).items():
        raise ValueError(repeat_message(source, path, keys))
    return {key: list(split[key]) for key in SPLIT_KEYS}


def save_split(split: Dict[str, List[str]], path: str) -> None:
    """Validate ``split`` and write it to ``path`` as indented JSON.

    Only ``path`` is written, and its parent folders when missing (the
    README writes ``data/BUSI/splits/...`` into a fresh BUSI folder).
    """
    split = validate_split(split, source=f'split for {path!r}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(split, f, indent=2)
        f.write('\n')


def load_split(path: str) -> Dict[str, List[str]]:
    """Read and validate a split file (see :func:`validate_split`)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Split file {path!r} not found.')
    with open(path, encoding='utf-8') as f:
        try:
            split = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(
                f'Split file {path!r} is not valid JSON: {err}.') from err
    return validate_split(split, source=f'Split file {path!r}')


def resolve_split_file(split_file: str, data_root: Optional[str]) -> str:
    """Find ``split_file``: as given (absolute, or relative to the current
    directory), else relative to ``data_root``.

    Raises:
        FileNotFoundError: Neither exists; the message lists both tries.
    """
    tried = [split_file]
    if osp.isfile(split_file):
        return split_file
    if data_root is not None and not osp.isabs(split_file):
        candidate = osp.join(data_root, split_file)
        tried.append(candidate)
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'Split file not found; tried {tried}. Make one with '
        f'tools/make_split.py, or test every image of a folder with '
        f'tools/test.py ... --all-images.')


def check_subset(subset: Optional[str], split_file: Optional[str]) -> None:
    """Validate a dataset's ``subset``/``split_file`` pair.

    Raises:
        ValueError: ``subset`` is not ``None`` or a key of
            :data:`SUBSETS`, or is given without ``split_file``.
    """
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f'Unknown subset {subset!r}; expected None (all '
                         f'images) or one of {list(SUBSETS)}.')
    if subset is not None and split_file is None:
        raise ValueError(f'subset={subset!r} needs a split_file (see '
                         f'tools/make_split.py).')


def unknown_split_paths(records: Sequence[ImageRecord],
                        split: Dict[str, List[str]]) -> List[str]:
    """Paths of ``split`` (in file order) that are not images of
    ``records``; ``split`` may hold only some of :data:`SPLIT_KEYS`."""
    known = {r.img_rel for r in records}
    return [p for key in SPLIT_KEYS for p in split.get(key, ())
            if p not in known]


def classes_without_labelled(records: Sequence[ImageRecord],
                             split: Dict[str, List[str]]) -> List[int]:
    """Indices of the classes present in ``records`` with no image in
    ``split['labeled']`` (paths not in ``records`` are ignored)."""
    label_of = {r.img_rel: r.gt_label for r in records}
    present = {label for label in label_of.values() if label >= 0}
    labelled = {label_of[p] for p in split['labeled'] if p in label_of}
    return sorted(present - labelled)


def no_labelled_message(source: str, labels: Sequence[int],
                        cls_classes: Sequence[str]) -> str:
    """The error for classes without a labelled image."""
    names = [cls_classes[i] for i in labels]
    return (f'{source}: the labeled list has no image of class(es) '
            f'{names}; every class needs a labelled image (make_split '
            f'guarantees one).')


def select_subset(records: Sequence[ImageRecord],
                  split: Dict[str, List[str]],
                  subset: Optional[str],
                  cls_classes: Sequence[str],
                  source: str = 'split') -> List[ImageRecord]:
    """Keep the records of ``subset``, in dataset order, after checking
    that the part of ``split`` this dataset uses fits it.

    Only the lists the subset is built from are checked (all four for
    ``subset=None``), so a run that builds only ``test`` accepts a
    test-only split and a folder that holds only the test images: every
    checked path must be an image of the dataset, and when the subset
    holds labelled images (``'labeled'``, ``'train'``) the ``labeled``
    list must hold at least one image of each class in the dataset.

    Args:
        records (Sequence[ImageRecord]): The whole dataset.
        split (dict): A validated split (:func:`validate_split`).
        subset (str, optional): A key of :data:`SUBSETS`, or ``None`` for
            every record.
        cls_classes (Sequence[str]): Class names, for messages.
        source (str): What to call the split in messages (its path).

    Returns:
        list[ImageRecord]: The kept records.

    Raises:
        ValueError: A split path is not in the dataset (up to
            :data:`MAX_LISTED` are listed), a class has no labelled
            image, or ``subset`` holds no image (an empty dataset).
    """
    keys = SPLIT_KEYS if subset is None else SUBSETS[subset]
    unknown = unknown_split_paths(records, {k: split[k] for k in keys})
    if unknown:
        example = records[0].img_rel if records else ''
        raise ValueError(
            f'{source} names {len(unknown)} image(s) that are not in the '
            f'dataset (paths must be relative to data_root, POSIX '
            f'separators, e.g. {example!r}): '
            f'{_listing(unknown)}.')
    no_label = classes_without_labelled(
        records, split) if 'labeled' in keys and subset is not None else []
    if no_label:
        raise ValueError(no_labelled_message(source, no_label, cls_classes))
    if subset is None:
        return list(records)
    keep = {p for key in SUBSETS[subset] for p in split[key]}
    if not keep:
        raise ValueError(f'{source}: subset {subset!r} holds no image.')
    return [r for r in records if r.img_rel in keep]


__all__ = [
    'ClassFolderFiles', 'ImageRecord', 'MAX_LISTED', 'SPLIT_KEYS', 'SUBSETS',
    'check_split_form', 'check_subset', 'classes_without_labelled',
    'group_class_files', 'load_split', 'make_split', 'natural_key',
    'no_labelled_message', 'repeat_message',
    'resolve_split_file', 'save_split', 'scan_busi', 'select_subset',
    'split_repeats', 'unknown_split_paths', 'validate_split'
]
