"""One metric for both tasks: lesion segmentation (Dice, IoU, HD95,
precision, recall) and image classification (accuracy, macro P/R/F1, AUC,
per-class sensitivity/specificity, confusion matrix).

MMSeg's ``IoUMetric`` averages Dice over classes including background and has
no HD95; here the lesion class is reported alone, per image and globally, and
HD95 has explicit rules for empty masks (see :mod:`.functional`).
"""
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from prettytable import PrettyTable
from sklearn.metrics import (accuracy_score, confusion_matrix,
                             precision_recall_fscore_support)

from hermes_mm.registry import METRICS
from .functional import (BOTH_EMPTY_OVERLAP, BOUNDARY_CONNECTIVITY,
                         HD95_BOTH_EMPTY, HD95_MODES, HD95_ONE_EMPTY,
                         HD_PERCENTILE, Spacing, binary_counts, hd95,
                         lesion_masks, one_vs_rest_auc, overlap_scores,
                         safe_divide, sensitivity_specificity, subset_mean)

#: Label of pixels excluded from evaluation (MMSeg's convention).
IGNORE_INDEX = 255
#: Segmentation label of the lesion class (``classes=('background',
#: 'lesion')``).
LESION_INDEX = 1
#: ``gt_label`` of an image whose class is unknown.
UNKNOWN_LABEL = -1
#: Fractions are reported in percent.
PERCENT = 100.0


def _to_numpy(x: Any) -> np.ndarray:
    """Tensor / array / number -> numpy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _field(sample: dict, key: str) -> Optional[Any]:
    """``sample[key]``, unwrapping ``{'data': ...}`` (a ``PixelData`` after
    ``to_dict``); None when absent."""
    value = sample.get(key)
    if isinstance(value, BaseDataElement):
        value = value.to_dict()
    if isinstance(value, dict):
        value = value.get('data')
    return value


def _mask(x: Any, name: str, img_path: str) -> np.ndarray:
    """A (1, H, W) or (H, W) label map as an (H, W) array."""
    arr = _to_numpy(x)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f'{name} of {img_path} must be (1, H, W) or (H, W), '
                         f'got shape {arr.shape}')
    return arr


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """Lesion-segmentation and classification metrics in one pass.

    ``process`` keeps only a few numbers per image (pixel counts, HD95,
    labels, the probability vector), so memory stays flat and results are
    picklable for DDP collection. Either task may be missing from a sample
    (e.g. a model without classifier has no ``pred_score``); only the
    available metrics are returned.

    Segmentation (lesion class ``lesion_index`` only; pixels whose
    ground truth is ``ignore_index`` are excluded from everything):

    - ``seg/dice``, ``seg/iou``: per-image scores averaged over images.
      Empty-mask rules: prediction and ground truth both empty ->
      ``empty_overlap`` (default 1.0, i.e. 100 %, perfect); exactly one empty
      -> 0 (this follows from the formulas, TP = 0).
    - ``seg/dice_lesion``, ``seg/iou_lesion``: the same averaged over the
      images whose ground truth has a lesion (the usual convention of BUSI
      papers that leave "normal" images out of segmentation); NaN if there
      is none.
    - ``seg/false_lesion_rate``: percentage of the images without a lesion
      in the ground truth on which any lesion pixel is predicted (each one
      scores 0 in ``seg/dice``); NaN if every image has a lesion. Together
      with ``seg/dice_lesion`` it splits ``seg/dice`` into its two sources
      of error.
    - ``seg/dice_global``, ``seg/iou_global``, ``seg/precision``,
      ``seg/recall``: from TP/FP/FN summed over all pixels of the data set
      (as MMSeg's ``IoUMetric`` does, lesion class only).
    - ``seg/hd95``: averaged over all images; ``seg/hd95_lesion``: over
      images with a non-empty ground truth (NaN if there is none). Per image
      it is the 95th percentile of the pooled symmetric surface distances,
      boundaries being a mask minus its erosion by a 3x3 **cross**
      (``connectivity=1``, medpy's default; 2 = 3x3 square), distances in
      pixels of the original image (or ``spacing`` units). Both masks empty
      -> ``hd95_both_empty`` (default 0); exactly one empty ->
      ``hd95_one_empty``, by default the image diagonal
      ``sqrt(H^2 + W^2)``, the largest possible distance, so a model that
      predicts nothing is penalised. SSL4MIS instead returns 0 for an empty
      prediction, which flatters such models (``hd95_one_empty=0.``
      reproduces it). ``hd95_mode='max_directed'`` takes the larger of the
      two directed 95th percentiles instead of the pooled one (MONAI,
      DeepMind ``surface-distance``); it is never smaller, and up to
      several pixels larger on predictions with false-positive blobs. The
      README reports the default, ``'pooled'`` (medpy / SSL4MIS).

    Classification (images with a prediction and a ``gt_label``; a
    ``gt_label`` of -1 raises an error naming the image):

    - ``cls/accuracy``; macro ``cls/precision``, ``cls/recall``,
      ``cls/f1`` over all ``num_classes`` classes (sklearn, with
      ``zero_division``): a class that appears in neither the ground truth
      nor the predictions counts as 0 (with the default ``zero_division``)
      and pulls the macro mean down.
    - ``cls/auc``: one-vs-rest AUC averaged over the classes where it is
      defined (at least one positive and one negative); a class without a
      positive is *skipped* (unlike P/R/F1), a warning names it, and it is
      NaN if no class is defined. Each class is ranked by the log-odds
      of ``pred_score[k]`` (:func:`.functional.log_odds`: the same ranking
      as ``p_k``, but ``1 - p_k`` is the sum of the other probabilities
      where ``p_k > 1/2``), so float32 softmax saturation (a margin above
      ~16.6 rounds ``p_k`` to 1.0) does not create ties. In the binary case
      this is the usual AUC, ``roc_auc_score(y, p_1)``, ranked by the logit
      margin.
    - ``cls/sensitivity_<name>``, ``cls/specificity_<name>`` per class
      (names from ``cls_classes``, else ``class<i>``).
    - ``cls/confusion_matrix``: nested list, rows = ground truth, columns =
      prediction (non-scalar; MMEngine logs it as info).

    Ratios are in percent, HD95 in pixels (or ``spacing`` units).

    Args:
        lesion_index (int): Segmentation label of the lesion. Defaults to 1.
        ignore_index (int): Ground-truth label excluded from evaluation.
            Defaults to 255.
        num_classes (int, optional): Number of image classes. Defaults to
            ``len(cls_classes)``, else ``len(dataset_meta['cls_classes'])``,
            else the length of ``pred_score``, else ``max label + 1``.
        cls_classes (Sequence[str], optional): Class names; defaults to
            ``dataset_meta['cls_classes']`` (set by the Runner).
        empty_overlap (float): Dice/IoU fraction when prediction and ground
            truth are both empty. Defaults to 1.0 (100 %).
        hd95_both_empty (float): HD95 when both masks are empty.
            Defaults to 0.
        hd95_one_empty (str | float): HD95 when exactly one mask is empty:
            ``'diagonal'`` (default) or a fixed value.
        hd_percentile (float): Percentile of the surface distances.
            Defaults to 95.
        connectivity (int): Boundary erosion footprint, 1 = 3x3 cross
            (default), 2 = 3x3 square.
        hd95_mode (str): 'pooled' (default; medpy, SSL4MIS: percentile of
            the pooled two-way surface distances) or 'max_directed' (MONAI,
            surface-distance: the larger directed percentile).
        spacing (float | Sequence[float], optional): Pixel size (row, col)
            for HD95; None means pixel units.
        zero_division (float): Value of a precision, recall, sensitivity or
            specificity whose denominator is 0. Defaults to 0.
        log_table (bool): Log a table of the scalar results. Defaults to
            True.
        collect_device (str): ``'cpu'`` or ``'gpu'``, for DDP collection.
        prefix (str, optional): Prefix added to every key.
        collect_dir (str, optional): Directory for CPU collection.
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 lesion_index: int = LESION_INDEX,
                 ignore_index: int = IGNORE_INDEX,
                 num_classes: Optional[int] = None,
                 cls_classes: Optional[Sequence[str]] = None,
                 empty_overlap: float = BOTH_EMPTY_OVERLAP,
                 hd95_both_empty: float = HD95_BOTH_EMPTY,
                 hd95_one_empty: Union[str, float] = HD95_ONE_EMPTY,
                 hd_percentile: float = HD_PERCENTILE,
                 connectivity: int = BOUNDARY_CONNECTIVITY,
                 hd95_mode: str = 'pooled',
                 spacing: Spacing = None,
                 zero_division: float = 0.,
                 log_table: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir)
        if num_classes is not None and num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        if (num_classes is not None and cls_classes is not None
                and len(cls_classes) != num_classes):
            raise ValueError(f'num_classes={num_classes} but cls_classes has '
                             f'{len(cls_classes)} names: {cls_classes}')
        if isinstance(hd95_one_empty, str) and hd95_one_empty != 'diagonal':
            raise ValueError("hd95_one_empty must be 'diagonal' or a number, "
                             f'got {hd95_one_empty!r}')
        if connectivity not in (1, 2):
            raise ValueError(f'connectivity must be 1 (cross) or 2 (square), '
                             f'got {connectivity}')
        if hd95_mode not in HD95_MODES:
            raise ValueError(f'hd95_mode must be one of {HD95_MODES}, got '
                             f'{hd95_mode!r}')
        if not 0 <= hd_percentile <= PERCENT:
            raise ValueError(
                f'hd_percentile must be in [0, 100], got {hd_percentile}')
        self.lesion_index = lesion_index
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.cls_classes = tuple(cls_classes) if cls_classes else None
        self.empty_overlap = empty_overlap
        self.hd95_both_empty = hd95_both_empty
        self.hd95_one_empty = hd95_one_empty
        self.hd_percentile = hd_percentile
        self.connectivity = connectivity
        self.hd95_mode = hd95_mode
        self.spacing = spacing
        self.zero_division = zero_division
        self.log_table = log_table

    # ------------------------------------------------------------------ #
    # per batch
    # ------------------------------------------------------------------ #
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Reduce each sample to a small picklable record in
        ``self.results``: ``{'img_path', 'seg': dict | None, 'cls': dict |
        None}``.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs, ``SegDataSample``
                converted with ``to_dict()`` (``SegDataSample`` also
                accepted).
        """
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            img_path = str(sample.get('img_path', '<unknown image>'))
            self.results.append(
                dict(
                    img_path=img_path,
                    seg=self._process_seg(sample, img_path),
                    cls=self._process_cls(sample, img_path)))

    def _process_seg(self, sample: dict, img_path: str) -> Optional[dict]:
        """Pixel counts and HD95 of one image; None without seg data."""
        pred, gt = _field(sample, 'pred_sem_seg'), _field(sample, 'gt_sem_seg')
        if pred is None or gt is None:
            return None
        pred = _mask(pred, 'pred_sem_seg', img_path)
        gt = _mask(gt, 'gt_sem_seg', img_path)
        if pred.shape != gt.shape:
            raise ValueError(f'{img_path}: pred_sem_seg shape {pred.shape} != '
                             f'gt_sem_seg shape {gt.shape}; predictions '
                             'must be resized to the original image')
        pred_l, gt_l = lesion_masks(pred, gt, self.lesion_index,
                                    self.ignore_index)
        tp, fp, fn = binary_counts(pred_l, gt_l)
        dist = hd95(
            pred_l,
            gt_l,
            spacing=self.spacing,
            connectivity=self.connectivity,
            percentile=self.hd_percentile,
            both_empty=self.hd95_both_empty,
            one_empty=self.hd95_one_empty,
            mode=self.hd95_mode)
        return dict(tp=tp, fp=fp, fn=fn, hd95=dist, has_lesion=tp + fn > 0)

    def _process_cls(self, sample: dict, img_path: str) -> Optional[dict]:
        """Labels and probability vector of one image; None without cls
        data."""
        gt_label = sample.get('gt_label')
        score = sample.get('pred_score')
        pred_label = sample.get('pred_label')
        if gt_label is None or (score is None and pred_label is None):
            return None
        gt_label = int(_to_numpy(gt_label).reshape(-1)[0])
        if gt_label == UNKNOWN_LABEL:
            raise ValueError(f'{img_path} has an unknown class (gt_label='
                             f'{UNKNOWN_LABEL}); it cannot be evaluated for '
                             'classification')
        if score is not None:
            score = _to_numpy(score).astype(np.float64).reshape(-1)
        if pred_label is None:
            pred_label = int(np.argmax(score))
        else:
            pred_label = int(_to_numpy(pred_label).reshape(-1)[0])
        return dict(gt_label=gt_label, pred_label=pred_label, score=score)

    # ------------------------------------------------------------------ #
    # whole data set
    # ------------------------------------------------------------------ #
    def compute_metrics(self, results: List[dict]) -> Dict[str, Any]:
        """Aggregate the per-image records.

        Args:
            results (list[dict]): Records from :meth:`process`, all ranks.

        Returns:
            dict[str, Any]: ``seg/*`` and ``cls/*`` metrics (only for the
            tasks present), ratios in percent.
        """
        metrics: Dict[str, Any] = OrderedDict()
        seg = [r['seg'] for r in results if r['seg'] is not None]
        if seg:
            metrics.update(self._seg_metrics(seg))
        cls = [(r['img_path'], r['cls']) for r in results
               if r['cls'] is not None]
        if cls:
            metrics.update(self._cls_metrics(cls))
        if not metrics:
            print_log(
                'MultiTaskMetric: no sample had a segmentation or '
                'classification prediction with ground truth.',
                logger='current',
                level=logging.WARNING)
        if self.log_table:
            self._log_table(metrics)
        return metrics

    def _seg_metrics(self, seg: List[dict]) -> Dict[str, float]:
        """Lesion Dice/IoU (per image and global), precision, recall,
        HD95."""
        per_image = np.array([
            overlap_scores(r['tp'], r['fp'], r['fn'], self.empty_overlap)
            for r in seg
        ])
        tp, fp, fn = (sum(r[k] for r in seg) for k in ('tp', 'fp', 'fn'))
        dice_g, iou_g = overlap_scores(tp, fp, fn, self.empty_overlap)
        hd = np.array([r['hd95'] for r in seg])
        has_lesion = np.array([r['has_lesion'] for r in seg], dtype=bool)
        lesion_scores = PERCENT * subset_mean(per_image, has_lesion)
        predicted = np.array([r['tp'] + r['fp'] > 0 for r in seg])
        return OrderedDict([
            ('seg/dice', PERCENT * float(per_image[:, 0].mean())),
            ('seg/iou', PERCENT * float(per_image[:, 1].mean())),
            ('seg/dice_lesion', float(lesion_scores[0])),
            ('seg/iou_lesion', float(lesion_scores[1])),
            ('seg/false_lesion_rate',
             PERCENT * float(subset_mean(predicted, ~has_lesion))),
            ('seg/dice_global', PERCENT * dice_g),
            ('seg/iou_global', PERCENT * iou_g),
            ('seg/precision',
             PERCENT * safe_divide(tp, tp + fp, self.zero_division)),
            ('seg/recall',
             PERCENT * safe_divide(tp, tp + fn, self.zero_division)),
            ('seg/hd95', float(hd.mean())),
            ('seg/hd95_lesion', float(subset_mean(hd, has_lesion))),
        ])

    def _class_names(self, cls: List[tuple]) -> List[str]:
        """Class names, from the argument, ``dataset_meta`` or the data."""
        names = self.cls_classes
        if names is None and self.dataset_meta:
            meta_names = self.dataset_meta.get('cls_classes')
            names = tuple(meta_names) if meta_names else None
        num = self.num_classes
        if num is None:
            if names is not None:
                num = len(names)
            else:
                sizes = {len(c['score']) for _, c in cls
                         if c['score'] is not None}
                num = max(sizes) if sizes else 1 + max(
                    max(c['gt_label'], c['pred_label']) for _, c in cls)
        if names is None:
            names = tuple(f'class{i}' for i in range(num))
        if len(names) != num:
            raise ValueError(f'num_classes={num} but the class names are '
                             f'{names}')
        return list(names)

    def _cls_metrics(self, cls: List[tuple]) -> Dict[str, Any]:
        """Accuracy, macro P/R/F1, AUC, per-class sens./spec., confusion."""
        names = self._class_names(cls)
        num = len(names)
        for img_path, c in cls:
            for key in ('gt_label', 'pred_label'):
                if not 0 <= c[key] < num:
                    raise ValueError(f'{img_path}: {key}={c[key]} is not in '
                                     f'[0, {num}) (classes {names})')
            if c['score'] is not None and len(c['score']) != num:
                raise ValueError(f'{img_path}: pred_score has '
                                 f'{len(c["score"])} entries, expected {num}')
        y_true = np.array([c['gt_label'] for _, c in cls])
        y_pred = np.array([c['pred_label'] for _, c in cls])
        labels = list(range(num))
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true,
            y_pred,
            labels=labels,
            average='macro',
            zero_division=self.zero_division)
        metrics: Dict[str, Any] = OrderedDict([
            ('cls/accuracy', PERCENT * float(accuracy_score(y_true, y_pred))),
            ('cls/precision', PERCENT * float(precision)),
            ('cls/recall', PERCENT * float(recall)),
            ('cls/f1', PERCENT * float(f1)),
        ])
        auc = self._auc(cls, names)
        if auc is not None:
            metrics['cls/auc'] = auc
        cm = confusion_matrix(y_true, y_pred, labels=labels)
        sens, spec = sensitivity_specificity(cm, self.zero_division)
        for name, se, sp in zip(names, sens, spec):
            metrics[f'cls/sensitivity_{name}'] = PERCENT * float(se)
            metrics[f'cls/specificity_{name}'] = PERCENT * float(sp)
        metrics['cls/confusion_matrix'] = cm.tolist()
        return metrics

    def _auc(self, cls: List[tuple], names: List[str]) -> Optional[float]:
        """Macro one-vs-rest AUC over defined classes; None without
        scores."""
        scored = [c for _, c in cls if c['score'] is not None]
        if not scored:
            return None
        if len(scored) < len(cls):
            print_log(
                f'MultiTaskMetric: cls/auc uses the {len(scored)} of '
                f'{len(cls)} images that have a pred_score.',
                logger='current',
                level=logging.WARNING)
        aucs = one_vs_rest_auc(
            np.array([c['gt_label'] for c in scored]),
            np.stack([c['score'] for c in scored]))
        undefined = [n for n, a in zip(names, aucs) if np.isnan(a)]
        if undefined:
            print_log(
                'MultiTaskMetric: AUC undefined (no positive or no negative '
                f'ground truth) for class(es) {undefined}; '
                + ('cls/auc averages the other classes.' if len(undefined)
                   < len(names) else 'cls/auc is NaN.'),
                logger='current',
                level=logging.WARNING)
        if len(undefined) == len(names):
            return float('nan')
        return PERCENT * float(np.nanmean(aucs))

    @staticmethod
    def _log_table(metrics: Dict[str, Any]) -> None:
        """Log the scalar metrics (and the confusion matrix) as a table."""
        table = PrettyTable(field_names=['metric', 'value'])
        for key, value in metrics.items():
            if isinstance(value, float):
                table.add_row([key, f'{value:.2f}'])
        print_log('\n' + table.get_string(), logger='current')
        if 'cls/confusion_matrix' in metrics:
            print_log(
                'cls/confusion_matrix (rows: ground truth, cols: '
                f'prediction): {metrics["cls/confusion_matrix"]}',
                logger='current')
