"""Pure functions behind :class:`MultiTaskMetric`: lesion overlap, HD95 and
classification scores.

Everything here works on numpy arrays and plain numbers (no MMEngine state),
so each rule can be tested on a hand-made case. Ratios are fractions in
``[0, 1]``; the metric converts them to percent.

The HD95 follows medpy's ``hd95`` (boundary = mask minus its erosion,
Euclidean distance transform of the other boundary, 95th percentile of the
pooled two-way surface distances) and adds explicit rules for empty masks;
``mode='max_directed'`` gives the form of MONAI and DeepMind's
``surface-distance`` instead (the larger of the two directed 95th
percentiles).
"""
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

#: Dice/IoU (fraction) of an image whose prediction and ground truth are
#: both empty: the prediction is perfect.
BOTH_EMPTY_OVERLAP = 1.0
#: HD95 of an image whose prediction and ground truth are both empty.
HD95_BOTH_EMPTY = 0.0
#: HD95 rule when exactly one mask is empty: the image diagonal, the largest
#: possible distance, so predicting nothing is penalised.
HD95_ONE_EMPTY = 'diagonal'
#: Percentile of the pooled surface distances (95 -> HD95).
HD_PERCENTILE = 95.0
#: How the two directed surface-distance sets are combined into HD95:
#: 'pooled' = percentile of their union (medpy ``hd95``, SSL4MIS; the
#: default); 'max_directed' = the larger of the two directed percentiles
#: (MONAI ``compute_hausdorff_distance(percentile=95)``, DeepMind
#: ``surface-distance``). The second is never smaller than the first.
HD95_MODES = ('pooled', 'max_directed')
#: Erosion footprint connectivity for boundary extraction:
#: 1 = 3x3 cross (medpy's default), 2 = 3x3 square.
BOUNDARY_CONNECTIVITY = 1

Spacing = Optional[Union[float, Sequence[float]]]


def safe_divide(num: float, den: float, zero_division: float) -> float:
    """``num / den``, or ``zero_division`` when ``den == 0``."""
    return float(num) / float(den) if den else float(zero_division)


def subset_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values[mask]`` over the first axis; NaN (of the shape of
    one row) when ``mask`` selects nothing, e.g. lesion-only scores of a set
    without a lesion."""
    values = np.asarray(values, dtype=np.float64)
    if not np.any(mask):
        return np.full(values.shape[1:], np.nan)
    return values[mask].mean(axis=0)


def lesion_masks(pred: np.ndarray, gt: np.ndarray, lesion_index: int,
                 ignore_index: int) -> Tuple[np.ndarray, np.ndarray]:
    """Boolean lesion masks with ignored pixels set to background in both.

    Args:
        pred (np.ndarray): Predicted label map, (H, W).
        gt (np.ndarray): Ground-truth label map, (H, W); ``ignore_index``
            marks pixels excluded from evaluation.
        lesion_index (int): Label value of the lesion class.
        ignore_index (int): Label value to ignore in ``gt``.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(pred_lesion, gt_lesion)``, both
        bool (H, W), False wherever ``gt == ignore_index``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} != ground-truth '
                         f'shape {gt.shape}')
    valid = gt != ignore_index
    return (pred == lesion_index) & valid, (gt == lesion_index) & valid


def binary_counts(pred: np.ndarray, gt: np.ndarray) -> Tuple[int, int, int]:
    """True-positive, false-positive and false-negative pixel counts.

    Args:
        pred (np.ndarray): Bool predicted mask, any shape.
        gt (np.ndarray): Bool ground-truth mask, same shape.

    Returns:
        tuple[int, int, int]: ``(tp, fp, fn)``.
    """
    tp = int(np.count_nonzero(pred & gt))
    return tp, int(np.count_nonzero(pred)) - tp, int(
        np.count_nonzero(gt)) - tp


def overlap_scores(
        tp: int,
        fp: int,
        fn: int,
        both_empty: float = BOTH_EMPTY_OVERLAP) -> Tuple[float, float]:
    """Dice and IoU from pixel counts, with the empty-mask rule.

    ``Dice = 2TP / (2TP + FP + FN)``, ``IoU = TP / (TP + FP + FN)``. When
    both masks are empty (all counts 0) both scores are ``both_empty``; when
    exactly one is empty ``TP = 0`` with a positive denominator, so both are
    0 by the formula itself.

    Args:
        tp (int): True-positive pixels.
        fp (int): False-positive pixels.
        fn (int): False-negative pixels.
        both_empty (float): Score when prediction and ground truth are both
            empty. Defaults to :data:`BOTH_EMPTY_OVERLAP` (1.0, perfect).

    Returns:
        tuple[float, float]: ``(dice, iou)`` as fractions.
    """
    return (safe_divide(2 * tp, 2 * tp + fp + fn, both_empty),
            safe_divide(tp, tp + fp + fn, both_empty))


def _spacing_array(spacing: Spacing, ndim: int) -> np.ndarray:
    """Per-axis pixel size as a float array of length ``ndim``."""
    if spacing is None:
        return np.ones(ndim)
    arr = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim, )).copy()
    if np.any(arr <= 0):
        raise ValueError(f'spacing must be positive, got {spacing}')
    return arr


def boundary(mask: np.ndarray,
             connectivity: int = BOUNDARY_CONNECTIVITY) -> np.ndarray:
    """Boundary pixels of a bool mask: the mask minus its erosion.

    Outside the array counts as background, so object pixels on the image
    edge are boundary pixels (as in medpy).

    Args:
        mask (np.ndarray): Bool mask, (H, W).
        connectivity (int): Erosion footprint, 1 = 3x3 cross, 2 = 3x3 square.

    Returns:
        np.ndarray: Bool boundary mask, (H, W).
    """
    footprint = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask & ~ndimage.binary_erosion(
        mask, structure=footprint, iterations=1, border_value=0)


def surface_distances(src: np.ndarray,
                      dst: np.ndarray,
                      spacing: Spacing = None,
                      connectivity: int = BOUNDARY_CONNECTIVITY) -> np.ndarray:
    """Distance from every boundary pixel of ``src`` to the boundary of
    ``dst`` (medpy's ``__surface_distances``).

    Args:
        src (np.ndarray): Non-empty bool mask, (H, W).
        dst (np.ndarray): Non-empty bool mask, (H, W).
        spacing (float | Sequence[float], optional): Pixel size per axis
            (row, col). None means 1 (distances in pixels).
        connectivity (int): Boundary erosion footprint, see :func:`boundary`.

    Returns:
        np.ndarray: 1-D float distances, one per boundary pixel of ``src``.
    """
    dist_to_dst = ndimage.distance_transform_edt(
        ~boundary(dst, connectivity),
        sampling=_spacing_array(spacing, dst.ndim))
    return dist_to_dst[boundary(src, connectivity)]


def hd95(pred: np.ndarray,
         gt: np.ndarray,
         spacing: Spacing = None,
         connectivity: int = BOUNDARY_CONNECTIVITY,
         percentile: float = HD_PERCENTILE,
         both_empty: float = HD95_BOTH_EMPTY,
         one_empty: Union[str, float] = HD95_ONE_EMPTY,
         mode: str = 'pooled') -> float:
    """95th-percentile symmetric Hausdorff distance of two bool masks.

    With ``d(A, B)`` the distances from every boundary pixel of ``A`` to the
    boundary of ``B`` and ``P`` the percentile:

    - ``mode='pooled'`` (default): ``P(d(pred, gt) ∪ d(gt, pred))``, like
      medpy's ``hd95`` (and SSL4MIS, which calls it);
    - ``mode='max_directed'``: ``max(P(d(pred, gt)), P(d(gt, pred)))``,
      like MONAI's ``compute_hausdorff_distance(percentile=95)`` and
      DeepMind's ``surface-distance``. It is never smaller than the pooled
      form, and larger when one direction has a heavier tail, e.g. a
      prediction with small false-positive blobs far from the lesion
      (their few boundary pixels are a small share of the pooled set).

    Empty masks (HD95 is undefined there):

    - both empty -> ``both_empty`` (default 0: nothing to find, nothing
      found);
    - exactly one empty -> ``one_empty``; ``'diagonal'`` (default) means
      ``sqrt((H*sy)^2 + (W*sx)^2)``, the largest possible distance. SSL4MIS
      returns 0 for an empty prediction, which rewards predicting nothing;
      pass ``one_empty=0.`` to reproduce that.

    Args:
        pred (np.ndarray): Bool predicted mask, (H, W).
        gt (np.ndarray): Bool ground-truth mask, (H, W).
        spacing (float | Sequence[float], optional): Pixel size (row, col).
            None means distances in pixels.
        connectivity (int): Boundary erosion footprint, 1 = 3x3 cross
            (medpy's default), 2 = 3x3 square.
        percentile (float): Percentile of the pooled distances.
        both_empty (float): Value when both masks are empty.
        one_empty (str | float): ``'diagonal'`` or a fixed value when
            exactly one mask is empty.
        mode (str): 'pooled' or 'max_directed', see above; the empty-mask
            rules are the same for both.

    Returns:
        float: The distance, in units of ``spacing`` (pixels by default).
    """
    if mode not in HD95_MODES:
        raise ValueError(f'mode must be one of {HD95_MODES}, got {mode!r}')
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} != ground-truth '
                         f'shape {gt.shape}')
    pred_any, gt_any = bool(pred.any()), bool(gt.any())
    if not pred_any and not gt_any:
        return float(both_empty)
    if pred_any != gt_any:
        if one_empty == 'diagonal':
            sizes = np.asarray(gt.shape) * _spacing_array(spacing, gt.ndim)
            return float(math.sqrt(float(np.sum(sizes**2))))
        return float(one_empty)
    # Crop to the bounding box of the union: exact, since outside the box is
    # background in both masks and erosion treats the array edge as
    # background; it keeps the distance transforms small.
    box = ndimage.find_objects((pred | gt).astype(np.uint8))[0]
    pred, gt = pred[box], gt[box]
    forward = surface_distances(pred, gt, spacing, connectivity)
    backward = surface_distances(gt, pred, spacing, connectivity)
    if mode == 'max_directed':
        return float(max(np.percentile(forward, percentile),
                         np.percentile(backward, percentile)))
    return float(np.percentile(np.concatenate([forward, backward]),
                               percentile))


def sensitivity_specificity(
        confusion: np.ndarray,
        zero_division: float = 0.) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest sensitivity and specificity.

    Args:
        confusion (np.ndarray): (K, K) counts, rows = ground truth, columns
            = prediction (sklearn's ``confusion_matrix`` layout).
        zero_division (float): Value for a class with no positives
            (sensitivity) or no negatives (specificity).

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(sensitivity, specificity)``, each
        (K,) fractions.
    """
    confusion = np.asarray(confusion, dtype=float)
    total = confusion.sum()
    tp = np.diag(confusion)
    fn = confusion.sum(1) - tp
    fp = confusion.sum(0) - tp
    tn = total - tp - fn - fp
    sens = np.array([safe_divide(a, a + b, zero_division)
                     for a, b in zip(tp, fn)])
    spec = np.array([safe_divide(a, a + b, zero_division)
                     for a, b in zip(tn, fp)])
    return sens, spec


def log_odds(probs: np.ndarray) -> np.ndarray:
    """One-vs-rest log-odds ``log(p_k / (1 - p_k))`` of each class, (N, K),
    from probabilities (N, K), computed where the precision is.

    A monotone function of ``p_k``, so it ranks samples as ``p_k`` does,
    but it survives float32 saturation: once a softmax margin exceeds about
    16.6 the large probability rounds to 1.0 and ties across samples, while
    the small ones still differ. So ``1 - p_k`` is taken as
    ``sum_{j != k} p_j`` where ``p_k > 1/2`` (there ``p_k`` is coarsely
    rounded and the sum of the small others is precise), and from ``p_k``
    itself where ``p_k <= 1/2`` (exact, so ties in ``p_k`` stay ties). For
    two classes this is the logit margin ``z_1 - z_0`` (class 1) and its
    negative. Probabilities are clipped to the smallest positive float so
    the result is finite.
    """
    tiny = np.finfo(np.float64).tiny
    p = np.clip(np.asarray(probs, dtype=np.float64), tiny, 1.0)
    rest = np.stack([np.delete(p, k, axis=1).sum(axis=1)
                     for k in range(p.shape[1])], axis=1)
    complement = np.where(p > 0.5, rest, 1.0 - p)
    return np.log(p) - np.log(np.maximum(complement, tiny))


def one_vs_rest_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class one-vs-rest ROC AUC, NaN where it is undefined.

    Class ``k`` is ranked by its one-vs-rest log-odds (:func:`log_odds` of
    ``scores``) against ``labels == k``; that is the ranking of
    ``scores[:, k]`` itself, except that it stays correct when float32
    softmax saturates (``p_k`` rounded to 1.0 for several samples). AUC is
    undefined (NaN) for a class with no positive or no negative sample. In
    the binary case both classes give the same AUC, the usual binary AUC
    (``roc_auc_score(y, p_1)`` wherever ``p_1`` is not saturated), so their
    macro mean is that AUC.

    Args:
        labels (np.ndarray): Ground-truth class indices, (N,).
        scores (np.ndarray): Class probabilities (softmax), (N, K).

    Returns:
        np.ndarray: (K,) AUC fractions, NaN for undefined classes.
    """
    labels = np.asarray(labels)
    ranks = log_odds(scores)
    aucs = np.full(ranks.shape[1], np.nan)
    for k in range(ranks.shape[1]):
        positive = labels == k
        if positive.any() and not positive.all():
            aucs[k] = roc_auc_score(positive, ranks[:, k])
    return aucs
