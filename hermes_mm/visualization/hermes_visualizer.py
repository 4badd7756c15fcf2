"""Multi-task visualizer: lesion masks, image classes and pseudo-label zones.

A :class:`~mmseg.visualization.SegLocalVisualizer` that draws what hermes_mm
predicts (a lesion mask *and* an image class) as side-by-side panels, and
what the Hermes teacher feeds the student (dual-threshold pseudo-label
zones). Drawings go to MMEngine's visualizer backends through ``add_image``
(``LocalVisBackend`` writes PNGs; ``TensorboardVisBackend`` and
``WandbVisBackend`` receive the same images), or to a file with
``out_file``.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import mmcv
import numpy as np
from mmengine.dist import master_only
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from hermes_mm.registry import VISUALIZERS
from .drawing import (DEFAULT_ZONE_PALETTE, ZONES, Color, blend_mask,
                      class_text, colorize, draw_contour, draw_legend,
                      draw_text, draw_text_lines, hconcat, to_numpy)

#: Zone names on the pseudo-label legend, in legend order (``outside``,
#: batch padding, is not part of any image and gets no entry).
ZONE_LEGEND = (('reliable_lesion', 'reliable lesion'),
               ('reliable_background', 'reliable bg'),
               ('ambiguous', 'ambiguous'), ('unreliable', 'unreliable'))


@VISUALIZERS.register_module()
class HermesVisualizer(SegLocalVisualizer):
    """Draw hermes_mm predictions and pseudo-labels as panels.

    - :meth:`add_datasample` (what MMSeg's ``SegVisualizationHook`` and
      :class:`~hermes_mm.engine.hooks.HermesVisualizationHook` call):
      ``image | ground truth | prediction``; the ground-truth panel names
      the true class, the prediction panel writes ``"<class> p=0.87"``.
    - :meth:`add_pseudo_labels`: ``weak view | strong view | zones |
      legend`` of an unlabelled training image, zones coloured with
      ``zone_palette`` (reliable lesion, reliable background, ambiguous,
      unreliable, outside the image; see
      :mod:`hermes_mm.visualization.drawing`), the legend naming each
      colour.
    - :meth:`draw_overlay`: the image with the lesion contour and text
      lines (the inferencer's overlay: class and floored probability,
      lesion area, a remark when class and mask disagree).

    Class names come from ``dataset_meta['cls_classes']`` (the runner sets
    ``dataset_meta`` from the dataset) or ``cls_classes``.

    Args:
        name (str): Instance name.
        image (np.ndarray, optional): Image to draw on.
        vis_backends (list[dict], optional): MMEngine visualizer backends.
        save_dir (str, optional): Where backends save.
        classes (sequence[str]): Segmentation classes.
        palette (sequence): RGB colour per segmentation class; the lesion
            colour tints lesion pixels.
        dataset_name (str, optional): Passed to MMSeg (unused when
            ``classes``/``palette`` are given).
        alpha (float): Opacity of the lesion tint.
        cls_classes (sequence[str], optional): Image-class names when the
            dataset does not provide them.
        lesion_index (int): Segmentation class index of the lesion.
        contour_color (tuple): RGB colour of lesion outlines.
        zone_palette (dict, optional): RGB colour per zone name (keys of
            :data:`~hermes_mm.visualization.drawing.ZONES`); missing keys
            keep their defaults.
        **kwargs: Other :class:`mmengine.visualization.Visualizer` args.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None,
                 classes: Sequence[str] = ('background', 'lesion'),
                 palette: Sequence[Sequence[int]] = ((0, 0, 0), (255, 0, 0)),
                 dataset_name: Optional[str] = None,
                 alpha: float = 0.4,
                 cls_classes: Optional[Sequence[str]] = None,
                 lesion_index: int = 1,
                 contour_color: Color = (255, 255, 0),
                 zone_palette: Optional[Dict[str, Color]] = None,
                 **kwargs) -> None:
        super().__init__(
            name=name,
            image=image,
            vis_backends=vis_backends,
            save_dir=save_dir,
            alpha=alpha,
            **kwargs)
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        unknown = set(zone_palette or {}) - set(ZONES)
        if unknown:
            raise ValueError(f'zone_palette has unknown zones '
                             f'{sorted(unknown)}; known: {ZONES}')
        # SegLocalVisualizer.__init__ passes (palette, classes) swapped to
        # set_dataset_meta; set them again in the right order.
        self.set_dataset_meta(
            list(classes), [list(c) for c in palette], dataset_name)
        if cls_classes is not None:
            self.dataset_meta['cls_classes'] = tuple(cls_classes)
        self.default_cls_classes = (
            tuple(cls_classes) if cls_classes is not None else None)
        self.lesion_index = lesion_index
        self.contour_color = tuple(contour_color)
        self.zone_palette = dict(DEFAULT_ZONE_PALETTE, **(zone_palette or {}))

    # ------------------------------------------------------------------
    # meta
    # ------------------------------------------------------------------
    def class_names(self, num_classes: int) -> List[str]:
        """Image-class names (``'class <i>'`` for any that are unknown)."""
        meta = getattr(self, 'dataset_meta', None) or {}
        names = list(meta.get('cls_classes') or self.default_cls_classes
                     or ())
        return names + [f'class {i}' for i in range(len(names), num_classes)]

    @property
    def lesion_color(self) -> Color:
        """The palette colour of the lesion class."""
        meta = getattr(self, 'dataset_meta', None) or {}
        palette = meta.get('palette') or []
        if self.lesion_index < len(palette):
            return tuple(int(c) for c in palette[self.lesion_index])
        return (255, 0, 0)

    def lesion_mask(self, sem_seg: PixelData) -> np.ndarray:
        """(H, W) bool lesion mask of a ``PixelData`` label map."""
        return to_numpy(sem_seg.data).reshape(
            sem_seg.data.shape[-2:]) == self.lesion_index

    def prediction_text(self, data_sample: SegDataSample) -> str:
        """``'<predicted class> p=<its probability>'`` or ''. The class is
        ``pred_label`` when set (it can differ from the argmax of
        ``pred_score`` under ``test_cfg.lesion_classes``)."""
        if 'pred_score' not in data_sample:
            return ''
        scores = to_numpy(data_sample.pred_score).reshape(-1)
        if 'pred_label' in data_sample:
            label = int(to_numpy(data_sample.pred_label).reshape(-1)[0])
        else:
            label = int(scores.argmax())
        return class_text(self.class_names(len(scores))[label],
                          float(scores[label]))

    # ------------------------------------------------------------------
    # drawing (pure: return images)
    # ------------------------------------------------------------------
    def draw_mask(self, image: np.ndarray, mask: np.ndarray,
                  text: str) -> np.ndarray:
        """Tint and outline the lesion, write ``text``."""
        out = blend_mask(image, mask, self.lesion_color, self.alpha)
        out = draw_contour(out, mask, self.contour_color)
        return draw_text(out, text)

    def draw_ground_truth(self, image: np.ndarray,
                          data_sample: SegDataSample) -> np.ndarray:
        """The ground-truth panel: true mask and ``'gt: <class>'``."""
        text = 'gt'
        if 'gt_label' in data_sample:
            label = int(to_numpy(data_sample.gt_label).reshape(-1)[0])
            if label >= 0:
                text = f'gt: {self.class_names(label + 1)[label]}'
        if 'gt_sem_seg' not in data_sample:
            return draw_text(image, f'{text} (no mask)')
        return self.draw_mask(image, self.lesion_mask(data_sample.gt_sem_seg),
                              text)

    def draw_prediction(self, image: np.ndarray,
                        data_sample: SegDataSample) -> np.ndarray:
        """The prediction panel: predicted mask and ``'<class> p=..'``."""
        mask = (self.lesion_mask(data_sample.pred_sem_seg)
                if 'pred_sem_seg' in data_sample else np.zeros(
                    image.shape[:2], bool))
        return self.draw_mask(image, mask, self.prediction_text(data_sample))

    def draw_multitask(self,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample],
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       title: str = '') -> np.ndarray:
        """``image | ground truth | prediction`` (panels that apply);
        ``title`` (e.g. the image path) is written on the image panel."""
        panels = [draw_text(image, title)]
        if data_sample is not None and draw_gt and (
                'gt_sem_seg' in data_sample or 'gt_label' in data_sample):
            panels.append(self.draw_ground_truth(image, data_sample))
        if data_sample is not None and draw_pred:
            panels.append(self.draw_prediction(image, data_sample))
        return hconcat(panels)

    def draw_overlay(self, image: np.ndarray, mask: np.ndarray,
                     text: Union[str, Sequence[str]]) -> np.ndarray:
        """The image with the lesion contour and ``text`` (a line or a
        list of lines, top-down; no tint)."""
        lines = [text] if isinstance(text, str) else list(text)
        return draw_text_lines(
            draw_contour(image, mask, self.contour_color), lines)

    def class_has_lesion(self, class_name: str) -> Optional[bool]:
        """Whether images of ``class_name`` show a lesion, from
        ``dataset_meta['lesion_classes']``; None when every class (or no
        class) is a lesion class, e.g. TN3K."""
        meta = getattr(self, 'dataset_meta', None) or {}
        lesion = set(meta.get('lesion_classes') or ())
        classes = set(meta.get('cls_classes') or ())
        if not lesion or not classes or classes <= lesion:
            return None
        return class_name in lesion

    def draw_pseudo_labels(self,
                           weak: np.ndarray,
                           strong: np.ndarray,
                           zones: np.ndarray,
                           text: str = '') -> np.ndarray:
        """``weak view | strong view | zones`` of one unlabelled image.

        Args:
            weak, strong (np.ndarray): RGB views (H, W, 3), same geometry.
            zones (np.ndarray): (H, W) zone codes from
                :func:`~hermes_mm.visualization.drawing.zone_map`.
            text (str): Written on the zone panel (e.g. the image-level
                pseudo-label and its zone).
        """
        palette = [self.zone_palette[zone] for zone in ZONES]
        legend = draw_legend(
            [(label, self.zone_palette[zone]) for zone, label in ZONE_LEGEND],
            height=zones.shape[0], width=zones.shape[1])
        return hconcat([weak, strong, draw_text(colorize(zones, palette),
                                                text), legend])

    # ------------------------------------------------------------------
    # output (to backends / files)
    # ------------------------------------------------------------------
    def _emit(self, name: str, drawn: np.ndarray, show: bool,
              wait_time: float, out_file: Optional[str], step: int) -> None:
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True,
                       title: str = '') -> None:
        """Draw ``image | ground truth | prediction`` and save it to every
        backend (or to ``out_file``). Same signature as MMSeg's.

        Args:
            name (str): Image identifier (backend tag / file stem).
            image (np.ndarray): RGB image (H, W, 3) at the original size.
            data_sample (SegDataSample, optional): With ``gt_sem_seg`` /
                ``gt_label`` and ``pred_sem_seg`` / ``pred_score``.
            draw_gt (bool): Draw the ground-truth panel.
            draw_pred (bool): Draw the prediction panel.
            show (bool): Also display it in a window.
            wait_time (float): Display time (s).
            out_file (str, optional): Write here instead of the backends.
            step (int): Global step for the backends.
            with_labels (bool): Unused (kept for MMSeg compatibility).
            title (str): Written on the image panel (the hook writes the
                image path when the tag does not name the image).
        """
        drawn = self.draw_multitask(image, data_sample, draw_gt, draw_pred,
                                    title)
        self._emit(name, drawn, show, wait_time, out_file, step)

    @master_only
    def add_pseudo_labels(self,
                          name: str,
                          weak: np.ndarray,
                          strong: np.ndarray,
                          zones: np.ndarray,
                          text: str = '',
                          step: int = 0,
                          out_file: Optional[str] = None) -> None:
        """Draw :meth:`draw_pseudo_labels` and save it to every backend."""
        drawn = self.draw_pseudo_labels(weak, strong, zones, text)
        self._emit(name, drawn, False, 0, out_file, step)


__all__ = ['HermesVisualizer', 'ZONE_LEGEND']
