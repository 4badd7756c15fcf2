"""Inference with a trained hermes_mm model: lesion mask + image class.

Modelled on MMSeg's ``MMSegInferencer`` (an MMEngine ``BaseInferencer``):
a config (path, ``Config`` or dict) and a checkpoint in, per image out:

- ``mask``: lesion mask (H, W) uint8 {0, 1} at the image's original size;
- ``scores``: class probabilities (K,), summing to 1; ``pred_label`` /
  ``pred_class``: the predicted class;
- ``lesion_area``: lesion pixels in ``mask``;
- optionally an overlay: the image with the lesion contour,
  ``"<class> p=0.87"`` (floored: 0.995 shows as 0.99), the lesion area,
  and a remark when the class (e.g. "normal") and the mask disagree.

Works with ``MultiTaskSegmentor`` and ``HermesSegmentor`` configs (Hermes
predicts with its ``predict_on`` network, the teacher by default). The
pipeline is the config's test pipeline without annotation loading.

Example::

    >>> from hermes_mm.apis import HermesInferencer
    >>> inferencer = HermesInferencer('configs/hermes_busi.py', 'best.pth')
    >>> result = inferencer(['a.png', 'b.png'], out_dir='out')
    >>> result['predictions'][0]['pred_class'], result['predictions'][0][
    ...     'lesion_area']
"""
import copy
import csv
import os
import os.path as osp
import re
import warnings
from typing import (Any, Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Union)

import mmcv
import mmengine.fileio as fileio
import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.infer.infer import BaseInferencer, ModelType
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import FUNCTIONS, init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from mmseg.structures import SegDataSample
from rich.progress import track
from torch import nn

from hermes_mm.datasets.splits import natural_key
from hermes_mm.registry import (DATASETS, INFERENCERS, TRANSFORMS,
                                VISUALIZERS)
from hermes_mm.utils import iter_dataset_cfgs
from hermes_mm.utils.image_io import decode_image
from hermes_mm.visualization import HermesVisualizer
from hermes_mm.visualization.drawing import overlay_lines

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# BUSI-layout mask files (``x_mask.png``, ``x_mask_1.png``) are skipped when
# a folder is expanded; pass ``exclude=None`` to keep every image.
DEFAULT_EXCLUDE = r'_mask(_\d+)?$'
#: Transforms of a test pipeline that read the image from its path.
IMAGE_LOADERS = ('LoadImageAsStored', 'LoadImageFromFile')
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadMultiTaskAnnotations',
                      'LoadDepthAnnotation')
CSV_NAME = 'predictions.csv'

InputType = Union[str, os.PathLike, np.ndarray]
InputsType = Union[InputType, Sequence[InputType]]


class InferenceInput(NamedTuple):
    """One image to predict.

    Attributes:
        name (str): Unique, readable id: the path relative to the common
            folder of all inputs (POSIX), or ``array_<i>`` for arrays.
        source (str | np.ndarray): File path, or a BGR/grey array.
    """
    name: str
    source: Union[str, np.ndarray]


def _bare_type(cfg: dict) -> str:
    """``'mmseg.Resize'`` -> ``'Resize'``."""
    return str(cfg.get('type', '')).split('.')[-1]


def list_images(folder: str, exclude: Optional[str] = DEFAULT_EXCLUDE
                ) -> List[str]:
    """Image files under ``folder`` (recursive), in natural order.

    Args:
        folder (str): Folder to scan.
        exclude (str, optional): Regex searched in each file's stem; matches
            are skipped.
    """
    pattern = re.compile(exclude) if exclude else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            stem, ext = osp.splitext(name)
            if ext.lower() not in IMG_EXTENSIONS:
                continue
            if pattern is not None and pattern.search(stem):
                continue
            found.append(osp.join(root, name))
    return sorted(
        found, key=lambda p: natural_key(osp.relpath(p, folder)))


def collect_inputs(inputs: InputsType,
                   exclude: Optional[str] = DEFAULT_EXCLUDE
                   ) -> List[InferenceInput]:
    """Expand files, folders, arrays (or a list of them) into named inputs.

    Names are paths relative to the deepest folder containing every input
    (a folder input counts as itself, a file as its folder), so files with
    the same name in different folders get different names.

    Raises:
        FileNotFoundError: A path that does not exist.
        TypeError: An input of another type.
        ValueError: No image at all.
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        inputs = [inputs]
    entries = []  # (path or None, anchor folder or None, array or None)
    for index, item in enumerate(inputs):
        if isinstance(item, np.ndarray):
            entries.append((None, None, item, index))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError('inputs must be image paths, folders or numpy '
                            f'arrays, got {type(item).__name__}')
        path = osp.abspath(os.fspath(item))
        if osp.isdir(path):
            for file in list_images(path, exclude):
                entries.append((file, path, None, index))
        elif osp.isfile(path):
            entries.append((path, osp.dirname(path), None, index))
        else:
            raise FileNotFoundError(f'input {os.fspath(item)!r} does not '
                                    'exist')
    if not entries:
        raise ValueError(f'no image found in {inputs!r} (extensions '
                         f'{IMG_EXTENSIONS}, excluding {exclude!r})')
    anchors = [anchor for _, anchor, _, _ in entries if anchor is not None]
    common = osp.commonpath(anchors) if anchors else ''
    width = len(str(len(inputs)))
    return [
        InferenceInput(
            osp.relpath(path, common).replace(os.sep, '/'), path)
        if path is not None else InferenceInput(
            f'array_{index:0{width}d}', array)
        for path, _, array, index in entries
    ]


def unique_paths(names: Sequence[str], out_dir: str,
                 suffix: str = '.png') -> List[str]:
    """``out_dir/<name without extension><suffix>``, made unique with
    ``_1``, ``_2``, ... where two names would collide."""
    taken, paths = set(), []
    for name in names:
        stem = osp.splitext(name)[0]
        path, k = osp.join(out_dir, stem + suffix), 0
        while path in taken:
            k += 1
            path = osp.join(out_dir, f'{stem}_{k}{suffix}')
        taken.add(path)
        paths.append(path)
    return paths


def csv_header(class_names: Sequence[str]) -> List[str]:
    """``image, predicted_class, prob_<class>..., lesion_area, error``."""
    return (['image', 'predicted_class'] +
            [f'prob_{name}' for name in class_names] +
            ['lesion_area', 'error'])


def csv_row(prediction: Dict[str, Any]) -> List[Any]:
    """One ``predictions.csv`` row of a prediction dict."""
    return ([prediction['image'], prediction['pred_class']] +
            [f'{p:.6f}' for p in prediction['scores']] +
            [prediction['lesion_area'], ''])


def csv_failure_row(failure: Dict[str, Any],
                    num_classes: int) -> List[Any]:
    """The ``predictions.csv`` row of an image that could not be
    processed: its name and the error, no prediction."""
    return [failure['image']] + [''] * (num_classes + 2) + [failure['error']]


@INFERENCERS.register_module()
class HermesInferencer(BaseInferencer):
    """Lesion segmentation + image classification inferencer.

    Args:
        model (str | Config | dict): A hermes_mm config (MultiTaskSegmentor
            or HermesSegmentor model).
        weights (str, optional): Checkpoint path. Without one the model is
            randomly initialised (a warning says so).
        device (str, optional): 'cpu', 'cuda', 'cuda:1'...; None picks the
            available one. On CPU, SyncBN layers are reverted to BN.
        scope (str): Registry scope. Defaults to 'mmseg'.
        predict_on (str, optional): 'teacher' or 'student' for a Hermes
            model (default: the config's ``predict_on``).
        cls_classes (sequence[str], optional): Class names; by default those
            saved in the checkpoint (``meta.dataset_meta``), else those of
            the config's test dataset.
        exclude (str, optional): Regex on file stems skipped when a folder
            is expanded (BUSI mask files by default).
        show_progress (bool): Show a progress bar.
    """

    preprocess_kwargs: set = set()
    forward_kwargs: set = set()
    visualize_kwargs: set = {'show', 'wait_time', 'return_vis'}
    postprocess_kwargs: set = {'return_masks'}

    def __init__(self,
                 model: Union[ModelType, str],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 scope: str = 'mmseg',
                 predict_on: Optional[str] = None,
                 cls_classes: Optional[Sequence[str]] = None,
                 exclude: Optional[str] = DEFAULT_EXCLUDE,
                 show_progress: bool = True) -> None:
        init_default_scope(scope)
        super().__init__(
            model=model,
            weights=weights,
            device=device,
            scope=scope,
            show_progress=show_progress)
        if str(next(self.model.parameters()).device) == 'cpu':
            self.model = revert_sync_batchnorm(self.model)
        if predict_on is not None:
            choices = getattr(self.model, 'PREDICTORS', ())
            if predict_on not in choices:
                raise ValueError(
                    f'predict_on={predict_on!r} is not a predictor of '
                    f'{type(self.model).__name__} (has '
                    f'{list(choices)}; only teacher/student models such as '
                    'HermesSegmentor have any)')
            self.model.predict_on = predict_on
        if cls_classes is not None:
            self.model.dataset_meta['cls_classes'] = tuple(cls_classes)
        self.exclude = exclude
        self.lesion_index = int(getattr(self.model, 'lesion_index', 1))
        self.visualizer.dataset_meta = dict(self.model.dataset_meta)
        self.visualizer.lesion_index = self.lesion_index

    # ------------------------------------------------------------------
    # construction (BaseInferencer hooks)
    # ------------------------------------------------------------------
    @staticmethod
    def config_dataset_meta(cfg: ConfigDict) -> dict:
        """Metainfo of the config's test dataset, without building it (that
        could scan or generate data): the class's ``METAINFO`` updated by
        the config's ``metainfo``."""
        loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        if not loader:
            return {}
        for _, ds_cfg in iter_dataset_cfgs(loader.get('dataset'), 'dataset'):
            try:
                ds_cls = DATASETS.get(ds_cfg['type'])
            except KeyError:
                ds_cls = None
            meta = dict(getattr(ds_cls, 'METAINFO', {}) or {})
            meta.update(ds_cfg.get('metainfo') or {})
            if meta.get('cls_classes'):
                return meta
        return {}

    def _load_weights_to_model(self, model: nn.Module,
                               checkpoint: Optional[dict],
                               cfg: Optional[ConfigDict]) -> None:
        """Load the weights; set ``model.dataset_meta`` (checkpoint first,
        then the config's test dataset)."""
        meta = self.config_dataset_meta(cfg) if cfg else {}
        if checkpoint is not None:
            _load_checkpoint_to_model(model, checkpoint)
            meta.update(
                checkpoint.get('meta', {}).get('dataset_meta', None) or {})
        else:
            warnings.warn('No checkpoint: predictions come from a randomly '
                          'initialised model!')
        model.dataset_meta = meta

    def _init_pipeline(self, cfg: ConfigDict) -> Compose:
        """The test pipeline, minus annotation loading, loading from a path
        or an array (MMSeg's ``InferencerLoader``)."""
        loader = cfg.get('test_dataloader') or {}
        pipeline = None
        for _, ds_cfg in iter_dataset_cfgs(loader.get('dataset'), 'dataset'):
            if ds_cfg.get('pipeline'):
                pipeline = copy.deepcopy(list(ds_cfg['pipeline']))
                break
        if pipeline is None:
            raise ValueError('the config has no test_dataloader.dataset.'
                             'pipeline to build the inference pipeline from')
        pipeline = [
            t for t in pipeline if _bare_type(t) not in ANNOTATION_LOADERS
        ]
        loaders = [
            i for i, t in enumerate(pipeline)
            if _bare_type(t) in IMAGE_LOADERS
        ]
        if not loaders:
            raise ValueError(f'None of {IMAGE_LOADERS} is in the test '
                             f'pipeline {[t.get("type") for t in pipeline]}')
        file_loader = pipeline[loaders[0]]
        pipeline[loaders[0]] = dict(file_loader, type='InferencerLoader')
        pipeline = Compose(pipeline)
        # MMSeg's InferencerLoader reads paths with MMCV's
        # LoadImageFromFile; read them as the test pipeline does (e.g.
        # LoadImageAsStored: no EXIF rotation, 12-bit scaling).
        pipeline.transforms[loaders[0]].from_file = TRANSFORMS.build(
            file_loader)
        return pipeline

    def _init_collate(self, cfg: ConfigDict):
        """The test dataloader's ``collate_fn`` (MMEngine's ``FUNCTIONS``
        registry), else ``pseudo_collate``."""
        collate_cfg = (cfg.get('test_dataloader') or {}).get('collate_fn')
        if not collate_cfg:
            return pseudo_collate
        collate_type = collate_cfg.get('type', collate_cfg) if isinstance(
            collate_cfg, dict) else collate_cfg
        return FUNCTIONS.get(collate_type) if isinstance(
            collate_type, str) else collate_type

    def _init_visualizer(self, cfg: ConfigDict) -> HermesVisualizer:
        """A backend-less :class:`HermesVisualizer` with the config's
        drawing settings (overlays are written by the inferencer)."""
        vis_cfg = dict(cfg.get('visualizer') or {})
        vis_type = vis_cfg.get('type', HermesVisualizer)
        vis_cls = (vis_type if isinstance(vis_type, type) else
                   VISUALIZERS.get(vis_type))
        if vis_cls is None or not issubclass(vis_cls, HermesVisualizer):
            vis_cfg = dict(type=HermesVisualizer)
        vis_cfg.update(
            name=f'hermes_inferencer_{id(self)}',
            vis_backends=None,
            save_dir=None)
        return VISUALIZERS.build(vis_cfg)

    # ------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        """Image-class names, in score order."""
        num_classes = getattr(self.model, 'cls_num_classes', None) or len(
            self.model.dataset_meta.get('cls_classes') or ())
        return self.visualizer.class_names(int(num_classes))

    def _inputs_to_list(self, inputs: InputsType) -> List[InferenceInput]:
        return collect_inputs(inputs, self.exclude)

    @staticmethod
    def _as_bgr(array: np.ndarray) -> np.ndarray:
        """Grey (H, W) or RGBA/BGRA arrays -> 3-channel BGR."""
        if array.ndim == 2:
            return np.repeat(array[..., None], 3, axis=2)
        if array.ndim == 3 and array.shape[2] == 1:
            return np.repeat(array, 3, axis=2)
        if array.ndim == 3 and array.shape[2] == 4:
            return np.ascontiguousarray(array[..., :3])
        return array

    def _pipeline_input(self, item: InferenceInput):
        if isinstance(item.source, np.ndarray):
            return self._as_bgr(item.source).copy()
        return item.source

    def _rgb_image(self, item: InferenceInput) -> np.ndarray:
        if isinstance(item.source, np.ndarray):
            return np.ascontiguousarray(self._as_bgr(item.source)[..., ::-1])
        # as the pipeline reads it: no EXIF rotation, bit-depth scaled
        return decode_image(fileio.get(item.source), channel_order='rgb')

    def preprocess(self,
                   inputs: List[InferenceInput],
                   batch_size: int = 1,
                   **kwargs) -> Iterator[dict]:
        """Batches ready for ``model.test_step``."""
        for chunk in self._get_chunk_data(inputs, batch_size):
            yield self.collate_fn(
                [self.pipeline(self._pipeline_input(i)) for i in chunk])

    def _load_batches(self, items: List[InferenceInput], batch_size: int,
                      failures: List[Dict[str, Any]]) -> Iterator[tuple]:
        """``(indices, batch)`` of the items the pipeline loads; an item it
        cannot load (a corrupt or unreadable file) is appended to
        ``failures`` (``image``, ``img_path``, ``error``) and skipped, so
        one bad file does not stop a folder."""
        for chunk in self._get_chunk_data(range(len(items)), batch_size):
            loaded, indices = [], []
            for i in chunk:
                try:
                    loaded.append(
                        self.pipeline(self._pipeline_input(items[i])))
                except Exception as err:  # noqa: BLE001 -- reported
                    source = items[i].source
                    failures.append(dict(
                        image=items[i].name,
                        img_path=source if isinstance(source, str) else None,
                        error=f'{type(err).__name__}: {err}'))
                    continue
                indices.append(i)
            if indices:
                yield indices, self.collate_fn(loaded)

    def __call__(self,
                 inputs: InputsType,
                 return_datasamples: bool = False,
                 batch_size: int = 1,
                 out_dir: str = '',
                 **kwargs) -> dict:
        """Predict every image; optionally write overlays and a CSV.

        Images are processed in batches and streamed to ``out_dir``, so a
        large folder is never held in memory at once (unless the results
        are returned with their masks).

        Args:
            inputs: An image path, a folder (searched recursively), a BGR or
                grey numpy array, or a list of them.
            return_datasamples (bool): Return ``SegDataSample`` objects
                instead of dicts.
            batch_size (int): Images per forward pass.
            out_dir (str): When given, write one overlay PNG per image
                (``out_dir/<name>.png``, mirroring the input folders) and
                ``out_dir/predictions.csv``.
            **kwargs: ``show``, ``wait_time``, ``return_vis`` (return the
                overlays), ``return_masks`` (keep ``mask`` in the returned
                dicts; default True).

        Returns:
            dict: ``predictions`` (list of dicts with ``image``,
            ``img_path``, ``mask``, ``scores``, ``pred_label``,
            ``pred_class``, ``lesion_area``; or data samples),
            ``visualization`` (list of RGB overlays if ``return_vis``)
            and ``failures`` (``image``, ``img_path``, ``error`` of each
            input that could not be loaded and was skipped; also rows of
            ``predictions.csv`` with only ``image`` and ``error``).
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        _, _, visualize_kwargs, postprocess_kwargs = self._dispatch_kwargs(
            **kwargs)
        items = self._inputs_to_list(inputs)
        overlay_paths = [None] * len(items)
        csv_file = writer = None
        if out_dir:
            overlay_paths = unique_paths([i.name for i in items], out_dir)
            sources = {
                osp.realpath(i.source)
                for i in items if isinstance(i.source, str)
            }
            clash = [p for p in overlay_paths if osp.realpath(p) in sources]
            if clash:
                raise ValueError(f'out_dir {out_dir!r} would overwrite input '
                                 f'images (e.g. {clash[0]!r}); choose '
                                 'another folder')
            os.makedirs(out_dir, exist_ok=True)
            csv_file = open(
                osp.join(out_dir, CSV_NAME), 'w', newline='', encoding='utf-8')
            writer = csv.writer(csv_file)
            writer.writerow(csv_header(self.class_names))

        results = dict(predictions=[], visualization=[], failures=[])
        chunks = list(self._get_chunk_data(range(len(items)), batch_size))
        batches = self._load_batches(items, batch_size, results['failures'])
        if self.show_progress:
            batches = track(
                batches, total=len(chunks), description='Inference')
        try:
            for indices, data in batches:
                samples = self.forward(data)
                chunk = [items[i] for i in indices]
                preds = [
                    self.pred_to_dict(item, sample)
                    for item, sample in zip(chunk, samples)
                ]
                vis = self.visualize(chunk, preds,
                                     [overlay_paths[i] for i in indices],
                                     **visualize_kwargs)
                if writer is not None:
                    writer.writerows(csv_row(p) for p in preds)
                    csv_file.flush()
                out = self.postprocess(
                    samples if return_datasamples else preds, vis,
                    return_datasamples, **postprocess_kwargs)
                results['predictions'].extend(out['predictions'])
                results['visualization'].extend(out['visualization'])
            if writer is not None:
                writer.writerows(
                    csv_failure_row(f, len(self.class_names))
                    for f in results['failures'])
        finally:
            if csv_file is not None:
                csv_file.close()
        return results

    def pred_to_dict(self, item: InferenceInput,
                     sample: SegDataSample) -> Dict[str, Any]:
        """The plain-python/numpy prediction of one image."""
        scores = sample.pred_score.detach().cpu().double().numpy()
        label = int(sample.pred_label.reshape(-1)[0])
        mask = (sample.pred_sem_seg.data[0] == self.lesion_index).cpu().numpy(
        ).astype(np.uint8)
        return dict(
            image=item.name,
            img_path=item.source if isinstance(item.source, str) else None,
            mask=mask,
            scores=scores,
            pred_label=label,
            pred_class=self.class_names[label],
            lesion_area=int(mask.sum()))

    def visualize(self,
                  inputs: List[InferenceInput],
                  preds: List[Dict[str, Any]],
                  out_files: Optional[List[Optional[str]]] = None,
                  show: bool = False,
                  wait_time: float = 0,
                  return_vis: bool = False) -> List[np.ndarray]:
        """Draw (and write to ``out_files``) the overlays of a batch."""
        out_files = out_files or [None] * len(inputs)
        if not (show or return_vis or any(out_files)):
            return []
        overlays = []
        for item, pred, out_file in zip(inputs, preds, out_files):
            image = self._rgb_image(item)
            overlay = self.visualizer.draw_overlay(
                image, pred['mask'], overlay_lines(
                    pred['pred_class'],
                    float(pred['scores'][pred['pred_label']]),
                    pred['lesion_area'], image.shape[0] * image.shape[1],
                    self.visualizer.class_has_lesion(pred['pred_class'])))
            if show:
                self.visualizer.show(
                    overlay, win_name=item.name, wait_time=wait_time)
            if out_file:
                os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
                mmcv.imwrite(mmcv.rgb2bgr(overlay), out_file)
            if return_vis:
                overlays.append(overlay)
        return overlays

    def postprocess(self,
                    preds: List[Any],
                    visualization: List[np.ndarray],
                    return_datasample: bool = False,
                    return_masks: bool = True) -> dict:
        """Pack a batch's predictions (dropping masks if not wanted)."""
        if not return_datasample and not return_masks:
            preds = [{k: v for k, v in p.items() if k != 'mask'}
                     for p in preds]
        return dict(predictions=list(preds), visualization=visualization)

    @torch.no_grad()
    def forward(self, inputs: dict, **kwargs) -> List[SegDataSample]:
        """``model.test_step`` on one batch."""
        return self.model.test_step(inputs)


__all__ = [
    'CSV_NAME', 'DEFAULT_EXCLUDE', 'HermesInferencer', 'InferenceInput',
    'collect_inputs', 'csv_failure_row', 'csv_header', 'csv_row',
    'list_images', 'unique_paths'
]
