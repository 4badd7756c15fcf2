"""Dual-threshold pseudo-labels of one unlabelled batch, and their upkeep.

:class:`DualThresholdPseudoLabeler` turns the teacher's probabilities (in
the strong views' frame, i.e. after CutMix) into a :class:`PseudoLabels`:
reliable / ambiguous / unreliable zones for pixels and images under the
current thresholds. It owns everything else about pseudo-labels:

- the two threshold policies (``seg_threshold``, ``cls_threshold``) and
  their per-iteration :meth:`~DualThresholdPseudoLabeler.update` from the
  confidence statistics of the last batch (all-reduced across ranks);
- :meth:`~DualThresholdPseudoLabeler.diagnostics`: zone ratios (logged with
  the losses) and, when the unlabelled set has hidden annotations, the
  pseudo-label quality counts that ``TeacherThresholdUpdateHook`` windows;
- one-shot records of a batch for ``HermesVisualizationHook``.

Consumers (the pseudo-label losses, the contrast heads, the consistency
head) read the :class:`PseudoLabels` only; thresholds are applied here.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce
from torch import Tensor

from hermes_mm.registry import MODELS
from .zones import (Zones, confidence_histogram, confidence_stats,
                    dual_threshold_zones, flatten_pixels)


@dataclass
class PseudoLabels:
    """The teacher's labels for one unlabelled batch, in the frame of the
    (CutMixed) strong views the student sees.

    Attributes:
        seg_probs (Tensor): (B, C, H, W) teacher pixel probabilities.
        cls_probs (Tensor): (B, K) teacher image probabilities.
        region (BoolTensor): (B, H, W) inside the image (not padding).
        mixed (BoolTensor): (B,) CutMixed views: no image label.
        seg_zones (Zones): Pixel zones, flattened to B*H*W rows.
        cls_zones (Zones): Image zones, (B,) rows.
        masks (LongTensor): (B, H, W) pixel pseudo-labels, ``ignore_index``
            outside the reliable zone and the region.
        seg_thresholds (tuple[Tensor, Tensor]): The pixel ``(tau_low,
            tau_high)`` the zones were cut with.
        hidden_masks / hidden_labels (Tensor, optional): The unlabelled
            set's hidden annotations, for diagnostics only.
        unmixed_image_views (bool): The student's image-level outputs come
            from unmixed strong views (``HermesSegmentor(unmixed_image_view
            =True)``), so a mixed image keeps its image pseudo-label.
    """
    seg_probs: Tensor
    cls_probs: Tensor
    region: Tensor
    mixed: Tensor
    seg_zones: Zones
    cls_zones: Zones
    masks: Tensor
    seg_thresholds: Tuple[Tensor, Tensor]
    hidden_masks: Optional[Tensor] = None
    hidden_labels: Optional[Tensor] = None
    unmixed_image_views: bool = False

    @property
    def cls_usable(self) -> Tensor:
        """(B,) images with an image-level signal: a mixed view has no
        single class, so a mixed image keeps its image label only when the
        student classifies an unmixed view of it."""
        if self.unmixed_image_views:
            return torch.ones_like(self.mixed)
        return ~self.mixed

    @property
    def cls_reliable(self) -> Tensor:
        """(B,) images whose image pseudo-label trains the student."""
        return self.cls_zones.reliable & self.cls_usable

    def lesion_images(self, lesion_index: int, min_pixels: int) -> Tensor:
        """(B,) images with at least ``min_pixels`` reliable lesion
        pixels."""
        return (self.masks == lesion_index).flatten(1).sum(
            dim=1) >= min_pixels

    def pixel_zones_at(self, size: Tuple[int, int]) -> Tuple[Zones, Tensor]:
        """Pixel zones of the probabilities average-pooled to ``size`` (a
        feature map's), cut with the same thresholds; and the (B*h*w,)
        mask of cells that lie wholly inside the image."""
        probs = F.adaptive_avg_pool2d(self.seg_probs, size)
        region = F.adaptive_avg_pool2d(self.region[:, None].float(),
                                       size).flatten() >= 1
        return dual_threshold_zones(flatten_pixels(probs),
                                    *self.seg_thresholds), region


@MODELS.register_module()
class DualThresholdPseudoLabeler(nn.Module):
    """Dual-threshold pixel and image pseudo-labels with adapting
    thresholds.

    Args:
        seg_num_classes (int): Segmentation classes (filled in by the
            segmentor).
        cls_num_classes (int): Image classes (filled in by the segmentor).
        seg_threshold (dict): Threshold policy for pixels (a
            ``BaseDualThreshold``; ``num_classes`` is filled in).
        cls_threshold (dict): Threshold policy for images.
        ignore_index (int): Label of pixels without a pseudo-label.
        lesion_index (int): Segmentation class of the lesion
            (diagnostics).
        cls_alignment (dict, optional): Applied to the teacher's image
            probabilities before the zones are cut, e.g.
            ``dict(type='DistributionAlignment')`` (class-balanced image
            pseudo-labels; ``num_classes`` is filled in). None (default):
            the probabilities as they are.
    """

    def __init__(self,
                 seg_num_classes: int,
                 cls_num_classes: int,
                 seg_threshold: dict = dict(type='AdaptiveDualThreshold'),
                 cls_threshold: dict = dict(type='AdaptiveDualThreshold'),
                 ignore_index: int = 255,
                 lesion_index: int = 1,
                 cls_alignment: Optional[dict] = None) -> None:
        super().__init__()
        self.seg_num_classes = int(seg_num_classes)
        self.cls_num_classes = int(cls_num_classes)
        self.seg_threshold = MODELS.build(
            seg_threshold,
            default_args=dict(num_classes=self.seg_num_classes))
        self.cls_threshold = MODELS.build(
            cls_threshold,
            default_args=dict(num_classes=self.cls_num_classes))
        self.ignore_index = ignore_index
        self.lesion_index = lesion_index
        self.cls_alignment = MODELS.build(
            cls_alignment,
            default_args=dict(num_classes=self.cls_num_classes)
        ) if cls_alignment else None
        # Statistics of the last batch per task, for update(): confidence
        # sums and counts, plus a histogram and the labelled class counts
        # for policies that set ``histogram_bins``.
        self._pending: Dict[str, Dict[str, Tensor]] = {}
        # Quality counts of the last batch, for the hook (pop_counts()).
        self._counts: Dict[str, Tuple[float, float]] = {}
        # One-shot batch records for the visualisation hook.
        self.record_next = False
        self.last_record: Optional[Dict[str, Tensor]] = None

    def policies(self) -> Dict[str, nn.Module]:
        """``{'seg': pixel policy, 'cls': image policy}``."""
        return dict(seg=self.seg_threshold, cls=self.cls_threshold)

    @torch.no_grad()
    def forward(self,
                seg_probs: Tensor,
                cls_probs: Tensor,
                region: Tensor,
                mixed: Tensor,
                hidden_masks: Optional[Tensor] = None,
                hidden_labels: Optional[Tensor] = None,
                labelled_labels: Optional[Tensor] = None,
                labelled_masks: Optional[Tensor] = None) -> PseudoLabels:
        """Zones and pixel pseudo-labels under the current thresholds.

        Also keeps the confidence statistics for :meth:`update`.

        Args:
            seg_probs (Tensor): (B, C, H, W) teacher pixel probabilities.
            cls_probs (Tensor): (B, K) teacher image probabilities.
            region (BoolTensor): (B, H, W) inside the image.
            mixed (BoolTensor): (B,) CutMixed views.
            hidden_masks (LongTensor, optional): (B, H, W) hidden masks.
            hidden_labels (LongTensor, optional): (B,) hidden labels.
            labelled_labels (LongTensor, optional): (L,) labels of this
                step's labelled images (for ``cls_alignment`` and
                class-balanced image thresholds).
            labelled_masks (LongTensor, optional): (L, H, W) masks of this
                step's labelled images (for class-balanced pixel
                thresholds, e.g. ``ClassBalancedDualThreshold``).
        """
        if self.cls_alignment is not None:
            cls_probs = self.cls_alignment(cls_probs, labelled_labels)
        batch, _, height, width = seg_probs.shape
        seg_thresholds = self.seg_threshold.thresholds()
        seg_zones = dual_threshold_zones(
            flatten_pixels(seg_probs), *seg_thresholds)
        cls_zones = dual_threshold_zones(cls_probs,
                                         *self.cls_threshold.thresholds())
        flat_region = region.flatten()
        self._pending = dict(
            seg=self._stats('seg', seg_zones, flat_region, labelled_masks),
            cls=self._stats('cls', cls_zones, None, labelled_labels))
        masks = torch.where(
            seg_zones.reliable & flat_region, seg_zones.pseudo_label,
            torch.full_like(seg_zones.pseudo_label,
                            self.ignore_index)).view(batch, height, width)
        return PseudoLabels(
            seg_probs=seg_probs,
            cls_probs=cls_probs,
            region=region,
            mixed=mixed,
            seg_zones=seg_zones,
            cls_zones=cls_zones,
            masks=masks,
            seg_thresholds=seg_thresholds,
            hidden_masks=hidden_masks,
            hidden_labels=hidden_labels)

    def _stats(self, task: str, zones: Zones, valid: Optional[Tensor],
               labelled: Optional[Tensor]) -> Dict[str, Tensor]:
        """What ``task``'s policy's ``update`` takes from this batch."""
        policy = self.policies()[task]
        num_classes = policy.num_classes
        sums, counts = confidence_stats(zones, num_classes, valid)
        stats = dict(confidence_sum=sums, count=counts)
        bins = policy.histogram_bins
        if bins is None:
            return stats
        if labelled is None:
            raise ValueError(
                f'{type(policy).__name__} ({task}_threshold) balances the '
                'pseudo-labels against the labelled class shares: pass '
                'labelled_masks / labelled_labels to the pseudo-labeller')
        labelled = labelled.flatten()
        labelled = labelled[(labelled >= 0) & (labelled < num_classes)]
        stats.update(
            histogram=confidence_histogram(zones, num_classes, bins, valid),
            labelled_count=torch.bincount(
                labelled, minlength=num_classes).float())
        return stats

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        """Update both policies from the last batch's statistics, summed
        across ranks first so that every rank holds the same thresholds."""
        policies = self.policies()
        for task, stats in self._pending.items():
            stats = {key: value.clone() for key, value in stats.items()}
            for value in stats.values():
                all_reduce(value, op='sum')
            policies[task].update(iteration=iteration, **stats)
        self._pending = {}

    def threshold_scalars(self) -> Dict[str, float]:
        """``thr.<task>.<low|high>.<class index>`` -> current value."""
        scalars = dict()
        for task, policy in self.policies().items():
            low, high = policy.thresholds()
            for bound, values in (('low', low), ('high', high)):
                for index, value in enumerate(values.tolist()):
                    scalars[f'thr.{task}.{bound}.{index}'] = value
        return scalars

    def pop_counts(self) -> Dict[str, Tuple[float, float]]:
        """The last batch's quality counts (see :meth:`diagnostics`), once."""
        counts, self._counts = self._counts, {}
        return counts

    @torch.no_grad()
    def diagnostics(self, labels: PseudoLabels) -> Dict[str, Tensor]:
        """Zone ratios (logged) and pseudo-label quality counts.

        ``zone.<task>.<zone>``: share of the valid pixels (in the image) or
        of the usable (unmixed) images in each zone; ``zone.cls.usable``:
        share of the unlabelled images that are usable at all.

        The counts are kept for :meth:`pop_counts` (the hook logs
        ``pl.<name>`` as a ratio over a window), when the unlabelled set
        has hidden annotations: ``name -> (numerator, denominator)`` with
        names

        - ``seg.precision``, ``cls.precision``: correct / reliable, pooled
          over classes (for pixels this is dominated by the background);
        - ``seg.lesion.precision`` / ``seg.lesion.recall``: reliable lesion
          pseudo-labels that are lesion / all lesion pixels given a lesion
          pseudo-label (of the hidden lesion pixels), in the image region;
        - ``seg.lesion.as_background``: hidden lesion pixels given a
          reliable non-lesion pseudo-label, over all hidden lesion pixels
          (what trains a student towards "no lesion");
        - ``seg.false_lesion_images``: strong views whose (CutMixed)
          hidden mask has no lesion pixel but that get at least one
          reliable lesion pseudo-label, over all views without a hidden
          lesion (what trains false lesions on normal images; the
          pseudo-label counterpart of the test metric
          ``seg/false_lesion_rate``);
        - ``cls.<c>.precision`` / ``cls.<c>.recall``: the same per image
          class ``c``, over usable (unmixed) images with a known label.
        """
        seg_zones, cls_zones = labels.seg_zones, labels.cls_zones
        region = labels.region.flatten()
        usable = labels.cls_usable
        stats = dict()
        for task, zones, valid in (('seg', seg_zones, region),
                                   ('cls', cls_zones, usable)):
            total = valid.sum().clamp(min=1).float()
            for zone in ('reliable', 'ambiguous', 'unreliable'):
                stats[f'zone.{task}.{zone}'] = (getattr(zones, zone)
                                                & valid).sum() / total
        # zone.cls.* count unmixed images only: how many unlabelled images
        # had any image-level signal at all (CutMix removes it).
        stats['zone.cls.usable'] = usable.float().mean()
        counts = dict()  # name -> (numerator, denominator) masks
        if labels.hidden_masks is not None:
            hidden = labels.hidden_masks.flatten()
            valid = region & (hidden != self.ignore_index)
            chosen = seg_zones.reliable & valid
            correct = (seg_zones.pseudo_label == hidden) & chosen
            counts['seg.precision'] = (correct, chosen)
            lesion_label = chosen & (seg_zones.pseudo_label
                                     == self.lesion_index)
            lesion_truth = valid & (hidden == self.lesion_index)
            lesion_hit = lesion_label & lesion_truth
            counts['seg.lesion.precision'] = (lesion_hit, lesion_label)
            counts['seg.lesion.recall'] = (lesion_hit, lesion_truth)
            # The harm that keeps a collapsed model collapsed: lesion pixels
            # handed out as reliable background.
            counts['seg.lesion.as_background'] = (
                lesion_truth & chosen & ~lesion_label, lesion_truth)
            # The opposite harm: lesion pseudo-labels on a view whose
            # hidden mask has no lesion (counted per view, as the test
            # metric false_lesion_rate counts per image).
            per_view = labels.region.shape[0], -1
            no_lesion = valid.view(per_view).any(dim=1) & ~lesion_truth.view(
                per_view).any(dim=1)
            counts['seg.false_lesion_images'] = (
                no_lesion & lesion_label.view(per_view).any(dim=1), no_lesion)
        if labels.hidden_labels is not None:
            hidden = labels.hidden_labels
            valid = usable & (hidden >= 0)
            chosen = cls_zones.reliable & valid
            correct = (cls_zones.pseudo_label == hidden) & chosen
            counts['cls.precision'] = (correct, chosen)
            for c in range(self.cls_num_classes):
                label = chosen & (cls_zones.pseudo_label == c)
                hit = label & (hidden == c)
                counts[f'cls.{c}.precision'] = (hit, label)
                counts[f'cls.{c}.recall'] = (hit, valid & (hidden == c))
        # One host transfer for all counts.
        sums = torch.stack([
            torch.stack([num.sum(), den.sum()]) for num, den in
            counts.values()
        ]).tolist() if counts else []
        self._counts = {
            name: (float(num), float(den))
            for name, (num, den) in zip(counts, sums)
        }
        return stats

    @torch.no_grad()
    def record(self, labels: PseudoLabels, weak_inputs: Tensor,
               strong_inputs: Tensor) -> None:
        """Keep CPU copies of this batch's pseudo-labels, when asked.

        A no-op unless ``record_next`` is True (set by a visualisation hook
        every few iterations); it is reset here, so one request keeps one
        batch. Zones are those that train the student, i.e. in the
        (CutMixed) strong view's pixels.

        Stores ``last_record``: ``weak_inputs`` / ``strong_inputs``
        (B, 3, H, W) normalised; ``seg_pseudo_label`` (B, H, W) long;
        ``seg_reliable`` / ``seg_ambiguous`` / ``region`` (B, H, W) bool;
        ``cls_probs`` (B, K); ``cls_reliable`` / ``cls_ambiguous`` /
        ``mixed`` (B,) bool.
        """
        if not self.record_next:
            return
        self.record_next = False
        shape = labels.region.shape
        record = dict(
            weak_inputs=weak_inputs,
            strong_inputs=strong_inputs,
            seg_pseudo_label=labels.seg_zones.pseudo_label.view(shape),
            seg_reliable=labels.seg_zones.reliable.view(shape),
            seg_ambiguous=labels.seg_zones.ambiguous.view(shape),
            region=labels.region,
            cls_probs=labels.cls_probs,
            cls_reliable=labels.cls_zones.reliable,
            cls_ambiguous=labels.cls_zones.ambiguous,
            mixed=labels.mixed)
        self.last_record = {
            key: value.detach().cpu()
            for key, value in record.items()
        }
