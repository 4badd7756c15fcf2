"""Pixel-level dual-threshold contrastive loss against class prototypes (the
pixel-level contrastive term of Hermes, arXiv 2508.02265).

Sampled anchor pixels (labelled, or reliable pseudo-labelled) are pulled to
their class prototype and pushed from pixels of other classes, from
*ambiguous* pixels that are confidently not their class (hard negatives, see
:mod:`hermes_mm.models.pseudo_labels.zones`) and from the other classes'
prototypes: an InfoNCE loss (van den Oord et al., 2018,
https://arxiv.org/abs/1807.03748) with prototype positives as in ReCo
(Liu et al., ICLR 2022, https://arxiv.org/abs/2104.04465).

Unlike U2PL (Wang et al., CVPR 2022, https://arxiv.org/abs/2203.03884), whose
negatives are only pixels ranked *low* for the anchor's class among >= 3
classes (so for two classes its loss is identically 0), every class here has
negatives as soon as another class has an anchor, a prototype, or an
ambiguous pixel confidently not of it: the loss stays informative for binary
lesion / background segmentation.

Memory is bounded by the sample counts: pixels are *sampled first*
(:func:`sample_pixels`, on labels and masks only) and only the sampled rows
are normalised, projected (``HermesSegmentor`` runs the projection head on
the sampled feature vectors, not the whole map) and compared. The only
similarity matrix is, per class, (anchors sampled, 1 + negatives sampled +
other prototypes); what grows with the number of pixels N is a few masks and
index lists, never N x D embeddings or N x N.
"""
from typing import List, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from torch import Tensor

from hermes_mm.registry import MODELS


class ClassSample(NamedTuple):
    """The pixels sampled for one anchor class.

    Attributes:
        cls (int): The anchor class c.
        anchor_idx (LongTensor): (A_c,) indices of the sampled anchors,
            ``A_c = min(num_anchors_per_class, #anchors of c)``.
        negative_idx (LongTensor): (M_c,) indices of the sampled negative
            pixels, hard (ambiguous) ones first, ``M_c <= num_negatives``.
        num_hard (int): How many of ``negative_idx`` are ambiguous pixels.
    """
    cls: int
    anchor_idx: Tensor
    negative_idx: Tensor
    num_hard: int


def _sample(candidates: Tensor, k: int,
            generator: Optional[torch.Generator]) -> Tensor:
    """Up to ``k`` of the ``candidates`` (indices), uniformly without
    replacement, drawn with ``generator`` (on its own device)."""
    if candidates.numel() <= k:
        return candidates
    device = generator.device if generator is not None else candidates.device
    perm = torch.randperm(
        candidates.numel(), generator=generator, device=device)
    return candidates[perm[:k].to(candidates.device)]


def sample_pixel_contrast(labels: Tensor,
                          anchor_mask: Tensor,
                          negative_classes: Tensor,
                          num_anchors_per_class: int,
                          num_negatives: int,
                          generator: Optional[torch.Generator] = None
                          ) -> List[ClassSample]:
    """Choose anchor and negative pixels per class (indices only).

    For each class ``c`` with anchors, ``num_anchors_per_class`` anchors are
    drawn uniformly from the anchor pixels of class ``c``. Negatives are drawn
    from two pools with a fixed priority rule, **hard first**: up to
    ``num_negatives`` uniformly from the ambiguous pixels confidently not
    ``c`` (non-anchors ``j`` with ``negative_classes[j, c]``), and the rest of
    the budget uniformly from the anchor pixels of other classes. Ambiguous
    pixels sit near the decision boundary, which is where the contrast is
    informative; the reliable pixels of other classes are still represented
    by their prototypes. A non-anchor pixel is never an anchor nor a positive.
    One negative set is shared by all anchors of a class, so memory is
    ``A_c x M_c``, not ``A_c x M_c x D``.

    Args:
        labels (LongTensor): (N,) class per pixel; read only for anchors.
        anchor_mask (BoolTensor): (N,) labelled or reliable pixels.
        negative_classes (BoolTensor): (N, K) classes each ambiguous pixel is
            confidently not; all False for the others.
        num_anchors_per_class (int): Anchors drawn per class.
        num_negatives (int): Negative pixels drawn per class.
        generator (torch.Generator, optional): Random source; None uses the
            global one (seeded by MMEngine's ``randomness`` config).

    Returns:
        list[ClassSample]: One entry per class that has anchors, in class
        order.
    """
    num_classes = negative_classes.shape[1]
    samples = []
    for cls in range(num_classes):
        anchors = anchor_mask & (labels == cls)
        anchor_idx = anchors.nonzero(as_tuple=True)[0]
        if anchor_idx.numel() == 0:
            continue
        anchor_idx = _sample(anchor_idx, num_anchors_per_class, generator)
        hard = (~anchor_mask & negative_classes[:, cls]).nonzero(
            as_tuple=True)[0]
        hard = _sample(hard, num_negatives, generator)
        easy = (anchor_mask & ~anchors).nonzero(as_tuple=True)[0]
        easy = _sample(easy, num_negatives - hard.numel(), generator)
        samples.append(
            ClassSample(cls, anchor_idx, torch.cat([hard, easy]),
                        hard.numel()))
    return samples


class PixelSample(NamedTuple):
    """Every pixel the loss needs, gathered once.

    Attributes:
        index (LongTensor): (U,) sorted, unique pixel indices into the N
            pixels (anchors and negatives of every class).
        labels (LongTensor): (U,) their labels.
        anchor_mask (BoolTensor): (U,) which of them are anchor pixels.
        classes (list[ClassSample]): Per class, indices into ``[0, U)``.
    """
    index: Tensor
    labels: Tensor
    anchor_mask: Tensor
    classes: List[ClassSample]


def sample_pixels(labels: Tensor,
                  anchor_mask: Tensor,
                  negative_classes: Tensor,
                  num_anchors_per_class: int,
                  num_negatives: int,
                  generator: Optional[torch.Generator] = None
                  ) -> PixelSample:
    """:func:`sample_pixel_contrast`, with the chosen pixels gathered once.

    Only labels and masks of the N pixels are read, so embeddings (or the
    features they are projected from) are needed for the ``U <= K *
    (num_anchors_per_class + num_negatives)`` sampled pixels alone.
    """
    per_class = sample_pixel_contrast(labels, anchor_mask, negative_classes,
                                      num_anchors_per_class, num_negatives,
                                      generator)
    empty = labels.new_zeros(0)
    if not per_class:
        return PixelSample(empty, empty, empty.bool(), [])
    parts = [s.anchor_idx for s in per_class] + \
        [s.negative_idx for s in per_class]
    index, inverse = torch.unique(torch.cat(parts), return_inverse=True)
    pieces = list(inverse.split([p.numel() for p in parts]))
    num = len(per_class)
    classes = [
        ClassSample(s.cls, pieces[i], pieces[num + i], s.num_hard)
        for i, s in enumerate(per_class)
    ]
    return PixelSample(index, labels[index], anchor_mask[index], classes)


def pixel_contrast_logits(anchors: Tensor, positive: Tensor,
                          negatives: Tensor, temperature: float) -> Tensor:
    """InfoNCE logits of anchors (A, D) against one positive (D,) and shared
    negatives (M, D): (A, 1 + M), the positive in column 0. This is the only
    pairwise tensor the loss builds."""
    keys = torch.cat([positive[None], negatives], dim=0)
    return anchors @ keys.t() / temperature


def class_centres(feats: Tensor, labels: Tensor, anchor_mask: Tensor,
                  prototypes: Tensor, proto_valid: Tensor):
    """Per-class contrast centres: the prototype where valid, else the
    detached, L2-normalised batch mean of the class's anchors.

    Returns:
        tuple[Tensor, BoolTensor]: centres (K, D) and which exist (K,).
    """
    num_classes = prototypes.shape[0]
    with torch.no_grad():
        member = F.one_hot(labels.clamp(0, num_classes - 1), num_classes)
        member = (member * anchor_mask[:, None]).to(feats.dtype)  # (N, K)
        batch_mean = F.normalize(member.t() @ feats.detach(), dim=1)
        has_anchor = member.sum(dim=0) > 0
    centres = torch.where(proto_valid[:, None],
                          prototypes.to(feats.dtype), batch_mean)
    return centres, proto_valid | has_anchor


def _check_inputs(n: int, dim: int, labels: Tensor, anchor_mask: Tensor,
                  negative_classes: Tensor, prototypes: Tensor,
                  proto_valid: Tensor, num_anchors_per_class: int,
                  num_negatives: int, temperature: float,
                  feats_shape: tuple) -> None:
    num_classes = negative_classes.shape[1]
    if (labels.shape != (n, ) or anchor_mask.shape != (n, )
            or negative_classes.shape[0] != n
            or prototypes.shape != (num_classes, dim)
            or proto_valid.shape != (num_classes, )):
        raise ValueError(
            f'expected feats (N, D), labels (N,), anchor_mask (N,), '
            f'negative_classes (N, K), prototypes (K, D), proto_valid (K,); '
            f'got {feats_shape}, {tuple(labels.shape)}, '
            f'{tuple(anchor_mask.shape)}, {tuple(negative_classes.shape)}, '
            f'{tuple(prototypes.shape)}, {tuple(proto_valid.shape)}')
    if temperature <= 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    if num_anchors_per_class < 1 or num_negatives < 0:
        raise ValueError(
            'need num_anchors_per_class >= 1 and num_negatives >= 0, got '
            f'{num_anchors_per_class} and {num_negatives}')
    bad = anchor_mask & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        raise ValueError(f'anchor labels must be in [0, {num_classes}), got '
                         f'{labels[bad].unique().tolist()}')


def sampled_pixel_contrast_terms(feats: Tensor, sample: PixelSample,
                                 prototypes: Tensor, proto_valid: Tensor,
                                 temperature: float):
    """Sum of the per-anchor InfoNCE terms and how many anchors had a
    negative, on the gathered, L2-normalised embeddings ``feats`` (U, D) of
    ``sample`` (see :func:`pixel_contrast_loss` for the loss)."""
    centres, has_centre = class_centres(feats, sample.labels,
                                        sample.anchor_mask, prototypes,
                                        proto_valid)
    total, count = feats.sum() * 0, 0
    for cls_sample in sample.classes:
        others = has_centre.clone()
        others[cls_sample.cls] = False
        negatives = torch.cat(
            [feats[cls_sample.negative_idx], centres[others]])
        if negatives.shape[0] == 0:
            continue  # only a positive: log(1) = 0, nothing to learn
        logits = pixel_contrast_logits(feats[cls_sample.anchor_idx],
                                       centres[cls_sample.cls], negatives,
                                       temperature)
        total = total + (logits.logsumexp(dim=1) - logits[:, 0]).sum()
        count += cls_sample.anchor_idx.numel()
    return total, count


def _pixel_contrast_terms(feats: Tensor, labels: Tensor, anchor_mask: Tensor,
                          negative_classes: Tensor, prototypes: Tensor,
                          proto_valid: Tensor, num_anchors_per_class: int,
                          num_negatives: int, temperature: float,
                          generator: Optional[torch.Generator]):
    """Sample, gather and normalise the sampled rows of ``feats`` (N, D),
    then :func:`sampled_pixel_contrast_terms`; same arguments as
    :func:`pixel_contrast_loss`."""
    n, dim = feats.shape
    _check_inputs(n, dim, labels, anchor_mask, negative_classes, prototypes,
                  proto_valid, num_anchors_per_class, num_negatives,
                  temperature, tuple(feats.shape))
    sample = sample_pixels(labels, anchor_mask, negative_classes,
                           num_anchors_per_class, num_negatives, generator)
    if sample.index.numel() == 0:
        return feats.sum() * 0, 0
    gathered = F.normalize(feats[sample.index], dim=1)
    return sampled_pixel_contrast_terms(gathered, sample, prototypes,
                                        proto_valid, temperature)


def pixel_contrast_loss(feats: Tensor,
                        labels: Tensor,
                        anchor_mask: Tensor,
                        negative_classes: Tensor,
                        prototypes: Tensor,
                        proto_valid: Tensor,
                        num_anchors_per_class: int,
                        num_negatives: int,
                        temperature: float,
                        generator: Optional[torch.Generator] = None) -> Tensor:
    """Prototype InfoNCE over sampled anchor pixels with hard negatives.

    For every class ``c`` with anchor pixels, anchors and negative pixels are
    sampled by :func:`sample_pixel_contrast`. The positive is the centre of
    ``c`` (its prototype if ``proto_valid[c]``, else the detached batch mean
    of its anchors); the negatives are the sampled pixels plus the centres of
    the other classes (prototype, or batch mean for a class with anchors in
    the batch). For an anchor ``a``:

    .. math::

        L_a = -\\log \\frac{\\exp(a \\cdot p / T)}{\\exp(a \\cdot p / T) +
              \\sum_n \\exp(a \\cdot n / T)}

    averaged over all sampled anchors of classes that have at least one
    negative. Gradients reach anchors and negative pixels (pushing ambiguous
    pixels away from the classes they are not); centres are constants.

    Args:
        feats (Tensor): (N, D) pixel embeddings; only the sampled rows are
            read and L2-normalised.
        labels (LongTensor): (N,) class per pixel (true or pseudo label);
            read only for anchors.
        anchor_mask (BoolTensor): (N,) labelled or reliable pixels.
        negative_classes (BoolTensor): (N, K) classes each ambiguous pixel is
            confidently not; all False for the others.
        prototypes (Tensor): (K, D) L2-normalised class prototypes.
        proto_valid (BoolTensor): (K,) which prototypes have been set.
        num_anchors_per_class (int): Anchors sampled per class (>= 1).
        num_negatives (int): Negative pixels sampled per class (>= 0).
        temperature (float): Softmax temperature ``T`` > 0.
        generator (torch.Generator, optional): Random source of the sampling.

    Returns:
        Tensor: Scalar loss; ``feats.sum() * 0`` when nothing can be
        contrasted (no anchor, or no class with a negative).
    """
    total, count = _pixel_contrast_terms(feats, labels, anchor_mask,
                                         negative_classes, prototypes,
                                         proto_valid, num_anchors_per_class,
                                         num_negatives, temperature,
                                         generator)
    return total / max(count, 1)


@MODELS.register_module()
class PixelContrastLoss(nn.Module):
    """Pixel-level dual-threshold contrastive loss with EMA class prototypes.

    Computes :func:`pixel_contrast_loss` on a bounded sample of pixels, the
    way training runs it: :meth:`sample` chooses anchors and negatives from
    labels and masks alone, then :meth:`forward_sampled` (also ``forward``)
    takes the embeddings of those pixels only (nothing of size N x D is
    built). The prototypes (K, D) and their
    ``proto_valid`` flags are registered buffers (saved in checkpoints),
    updated by :meth:`update_prototypes` as an EMA of the per-class mean of
    reliable pixel embeddings. ``steps_without_pairs`` (a buffer) counts
    consecutive forward calls with nothing to contrast.

    Args:
        num_classes (int): Number of segmentation classes. Defaults to 2
            (background, lesion).
        feat_dim (int): Embedding dimension D (keyword-only, required).
        num_anchors_per_class (int): Anchor pixels sampled per class.
            Defaults to 256.
        num_negatives (int): Negative pixels sampled per class. Defaults to
            512.
        temperature (float): Softmax temperature. Defaults to 0.1.
        prototype_momentum (float): EMA momentum ``m`` in [0, 1) of
            ``proto <- m * proto + (1 - m) * batch_mean``. Defaults to 0.99.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        loss_name (str): Name of the loss item, must start with ``loss_``.
            Defaults to 'loss_con_pix'.
    """

    def __init__(self,
                 num_classes: int = 2,
                 *,
                 feat_dim: int,
                 num_anchors_per_class: int = 256,
                 num_negatives: int = 512,
                 temperature: float = 0.1,
                 prototype_momentum: float = 0.99,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_con_pix') -> None:
        super().__init__()
        if num_classes < 2 or feat_dim < 1:
            raise ValueError('need num_classes >= 2 and feat_dim >= 1, got '
                             f'num_classes={num_classes}, '
                             f'feat_dim={feat_dim}')
        if num_anchors_per_class < 1 or num_negatives < 0:
            raise ValueError(
                'need num_anchors_per_class >= 1 and num_negatives >= 0, got '
                f'num_anchors_per_class={num_anchors_per_class}, '
                f'num_negatives={num_negatives}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if not 0 <= prototype_momentum < 1:
            raise ValueError('prototype_momentum must be in [0, 1), got '
                             f'{prototype_momentum}')
        if not loss_name.startswith('loss_'):
            raise ValueError("loss_name must start with 'loss_' so MMEngine "
                             f'sums it, got {loss_name!r}')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.num_anchors_per_class = num_anchors_per_class
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.prototype_momentum = prototype_momentum
        self.loss_weight = loss_weight
        self._loss_name = loss_name
        self.register_buffer('prototypes', torch.zeros(num_classes, feat_dim))
        self.register_buffer('proto_valid',
                             torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer('steps_without_pairs',
                             torch.zeros((), dtype=torch.long))

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict."""
        return self._loss_name

    def _check_classes(self, negative_classes: Tensor) -> None:
        if negative_classes.shape[-1] != self.num_classes:
            raise ValueError(f'negative_classes must have {self.num_classes}'
                             ' columns (one per class), got shape '
                             f'{tuple(negative_classes.shape)}')

    def _finish(self, total: Tensor, count: int) -> Tensor:
        if count == 0:
            self.steps_without_pairs += 1
            return total
        self.steps_without_pairs.zero_()
        return self.loss_weight * total / count

    def sample(self,
               labels: Tensor,
               anchor_mask: Tensor,
               negative_classes: Tensor,
               generator: Optional[torch.Generator] = None) -> PixelSample:
        """Choose this step's pixels from labels and masks alone.

        Gather the features (or embeddings) of ``sample.index`` and pass
        them to :meth:`forward_sampled`: nothing of size N x D is needed.
        """
        self._check_classes(negative_classes)
        return sample_pixels(labels, anchor_mask, negative_classes,
                             self.num_anchors_per_class, self.num_negatives,
                             generator)

    def forward_sampled(self, feats: Tensor, sample: PixelSample) -> Tensor:
        """Weighted loss on the embeddings (U, D) of the sampled pixels
        (``sample.index`` order; L2-normalised here).

        ``feats`` must carry the graph even when ``sample`` is empty (pass
        a (0, D) slice of the embeddings): the result is then 0 with that
        graph.
        """
        if feats.shape[0] != sample.index.numel():
            raise ValueError(f'feats has {feats.shape[0]} rows but the sample '
                             f'has {sample.index.numel()} pixels')
        if feats.shape[0] == 0:
            return self._finish(feats.sum() * 0, 0)
        total, count = sampled_pixel_contrast_terms(
            F.normalize(feats, dim=1), sample, self.prototypes,
            self.proto_valid, self.temperature)
        return self._finish(total, count)

    def forward(self, feats: Tensor, sample: PixelSample) -> Tensor:
        """Same as :meth:`forward_sampled`: the module's one loss path.
        Choose the pixels with :meth:`sample` first; the full (N, D)
        computation is the functional :func:`pixel_contrast_loss`."""
        return self.forward_sampled(feats, sample)

    @torch.no_grad()
    def update_prototypes(self, feats: Tensor, labels: Tensor,
                          mask: Tensor) -> None:
        """EMA-update the prototypes with the per-class mean of the
        L2-normalised, detached embeddings of the ``mask`` pixels (summed
        over ranks under distributed training, so prototypes stay
        identical). A class seen for the first time takes its mean directly.

        The all-reduces run on every call, whatever the data: call it on
        every rank every step, also with nothing sampled (N = 0 or ``mask``
        all False, which changes nothing), never behind a data-dependent
        branch, or distributed training hangs.

        Args:
            feats (Tensor): (N, D) pixel embeddings; N may be 0.
            labels (LongTensor): (N,) classes; read only where ``mask``.
            mask (BoolTensor): (N,) reliable or labelled pixels.
        """
        feats = F.normalize(feats.detach().to(self.prototypes.dtype), dim=1)
        mask = mask & (labels >= 0) & (labels < self.num_classes)
        member = F.one_hot(
            labels.clamp(0, self.num_classes - 1), self.num_classes)
        member = (member * mask[:, None]).to(feats.dtype)  # (N, K)
        sums = member.t() @ feats  # (K, D)
        counts = member.sum(dim=0)  # (K,)
        dist.all_reduce(sums)
        dist.all_reduce(counts)
        seen = counts > 0
        mean = F.normalize(sums, dim=1)  # same direction as sums / counts
        momentum = self.prototype_momentum
        ema = F.normalize(
            momentum * self.prototypes + (1 - momentum) * mean, dim=1)
        updated = torch.where(self.proto_valid[:, None], ema, mean)
        self.prototypes.copy_(
            torch.where(seen[:, None], updated, self.prototypes))
        self.proto_valid |= seen
