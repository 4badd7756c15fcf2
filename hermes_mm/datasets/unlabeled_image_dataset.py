"""A dataset of images without any annotation: the unlabelled source.

Semi-supervised training draws most of its images from a plain folder (or
a list) of scans nobody annotated. This dataset turns such a folder into
data infos of the form every hermes_mm pipeline expects
(``docs/architecture.md``, "Data info"), marked as unannotated, so it can
be concatenated with a labelled dataset (``mmengine.dataset.ConcatDataset``)
and sampled with :class:`MultiSourceRatioSampler`.
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset

from hermes_mm.registry import DATASETS

#: Metainfo keys holding class names; normalised to tuples so that
#: ``ConcatDataset``'s type check passes whether a config wrote a list or a
#: tuple.
_NAME_KEYS = ('classes', 'cls_classes', 'lesion_classes')


@DATASETS.register_module()
class UnlabeledImageDataset(BaseDataset):
    """Images only, from a folder (recursive) or from a list file.

    Each data info has ``has_mask=False``, ``gt_label=-1``,
    ``label_name=''``, ``seg_map_paths=[]``, ``seg_fields=[]``,
    ``reduce_zero_label=False``, ``img_path`` and ``img_rel`` (the path
    relative to ``data_root``, or to the image folder when ``data_root`` is
    empty; POSIX separators).

    Metainfo: the segmentation ``classes=('background', 'lesion')`` and
    ``palette`` as for BUSI, ``cls_classes`` and ``lesion_classes`` (empty
    unless given in ``metainfo``), and MMSeg's ``label_map=None``,
    ``reduce_zero_label=False``. ``ConcatDataset`` requires equal metainfo,
    so pass the labelled dataset's ``cls_classes`` and ``lesion_classes``
    here.

    Args:
        img_dir (str): Image folder, relative to ``data_root`` unless
            absolute. Defaults to '' (``data_root`` itself).
        ann_file (str): Optional list of images, relative to ``data_root``
            unless absolute: a ``.json`` file holding a list of paths, or a
            dict of lists read under ``subset`` (the output of
            ``tools/make_split.py``); any other suffix is a text file with
            one path per line. Paths are relative to the image folder.
            Empty (default): every file under the image folder whose suffix
            is in ``img_suffixes``, sorted.
        subset (str): Key read when ``ann_file`` is a JSON dict. Defaults to
            ``'unlabeled'``.
        img_suffixes (Sequence[str]): Image file suffixes (case-insensitive)
            found by the folder scan. Defaults to PNG, JPEG, BMP and TIFF.
        metainfo (dict, optional): Overrides of the metainfo, e.g.
            ``dict(cls_classes=('benign', 'malignant', 'normal'))``.
        data_root (str): Root of ``img_dir`` and ``ann_file``. Defaults to
            ''.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments
            (``pipeline``, ``test_mode``, ``lazy_init``, ``indices``, ...).
    """

    METAINFO = dict(
        classes=('background', 'lesion'),
        palette=[[0, 0, 0], [255, 0, 0]],
        cls_classes=(),
        lesion_classes=(),
        # What MMSeg's BaseSegDataset adds to its metainfo (no label
        # remapping), so ConcatDataset's equality check passes.
        label_map=None,
        reduce_zero_label=False)

    def __init__(self,
                 img_dir: str = '',
                 ann_file: str = '',
                 subset: str = 'unlabeled',
                 img_suffixes: Sequence[str] = ('.png', '.jpg', '.jpeg',
                                                '.bmp', '.tif', '.tiff'),
                 metainfo: Optional[dict] = None,
                 data_root: str = '',
                 **kwargs) -> None:
        if 'data_prefix' in kwargs:
            raise TypeError('UnlabeledImageDataset takes `img_dir`, not '
                            '`data_prefix`.')
        self.img_dir = img_dir
        self.subset = subset
        self.img_suffixes = tuple(s.lower() for s in img_suffixes)
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(img_path=img_dir),
            **kwargs)

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[dict] = None) -> dict:
        """BaseDataset's metainfo, with class-name sequences as tuples."""
        meta = super()._load_metainfo(metainfo)
        for key in _NAME_KEYS:
            if key in meta:
                meta[key] = tuple(meta[key])
        return meta

    def load_data_list(self) -> List[dict]:
        """Find the images and build one data info per image."""
        img_root = self.data_prefix['img_path']
        if self.ann_file:
            rel_paths = self._read_list(self.ann_file)
            paths = [osp.join(img_root, p) for p in rel_paths]
            missing = [p for p in paths if not osp.isfile(p)]
            if missing:
                raise FileNotFoundError(
                    f'{len(missing)} image(s) listed in {self.ann_file} do '
                    f'not exist, e.g. {missing[:3]}.')
        else:
            paths = self._scan_folder(img_root)
        rel_root = self.data_root or img_root
        return [
            dict(
                img_path=path,
                img_rel=osp.relpath(path, rel_root).replace(os.sep, '/'),
                seg_map_paths=[],
                has_mask=False,
                gt_label=-1,
                label_name='',
                seg_fields=[],
                reduce_zero_label=False) for path in paths
        ]

    def _scan_folder(self, folder: str) -> List[str]:
        """All image files under ``folder`` (recursive), sorted."""
        if not osp.isdir(folder):
            raise FileNotFoundError(f'Image folder {folder!r} does not exist.')
        paths = []
        for dirpath, _, filenames in os.walk(folder):
            paths.extend(
                osp.join(dirpath, name) for name in filenames
                if osp.splitext(name)[1].lower() in self.img_suffixes)
        if not paths:
            raise ValueError(f'Image folder {folder!r} holds no file with a '
                             f'suffix in {self.img_suffixes}.')
        return sorted(paths)

    def _read_list(self, ann_file: str) -> List[str]:
        """Image paths from a JSON (list or dict of lists) or text file."""
        if not osp.isfile(ann_file):
            raise FileNotFoundError(f'Image list {ann_file!r} does not exist.')
        if ann_file.lower().endswith('.json'):
            with open(ann_file) as f:
                content = json.load(f)
            if isinstance(content, dict):
                if self.subset not in content:
                    raise KeyError(
                        f'{ann_file!r} has no key {self.subset!r} (`subset`);'
                        f' keys: {sorted(content)}.')
                content = content[self.subset]
            if not isinstance(content, list):
                raise TypeError(f'{ann_file!r} must hold a list of paths, '
                                f'got {type(content).__name__}.')
            rel_paths = [str(p) for p in content]
        else:
            with open(ann_file) as f:
                rel_paths = [line.strip() for line in f if line.strip()]
        if not rel_paths:
            raise ValueError(f'Image list {ann_file!r} is empty.')
        return rel_paths
