"""Dual-threshold supervised contrastive loss for image embeddings, with a
per-class memory queue (the image-level contrastive term of Hermes,
arXiv 2508.02265).

Supervised contrastive learning (SupCon, Khosla et al., NeurIPS 2020,
https://arxiv.org/abs/2004.11362) pulls together embeddings of the same class
and pushes apart the others. Hermes feeds it labelled images (true labels)
and *reliable* unlabelled images (pseudo-labels) as anchors, and uses
*ambiguous* unlabelled images only as extra negatives for the classes they
are confidently not (see :mod:`hermes_mm.models.pseudo_labels.zones`). A
per-class FIFO queue of past embeddings (as in MoCo, He et al., CVPR 2020,
https://arxiv.org/abs/1911.05722) supplies positives when a small medical
batch holds a single image of a class.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from torch import Tensor

from hermes_mm.registry import MODELS


class _SupConTerms(NamedTuple):
    """Per-anchor losses of the anchors that have at least one positive."""
    per_anchor: Tensor  # (A',)
    num_anchors: int  # A' = anchors with |P_i| > 0


def _supcon_terms(feats: Tensor, labels: Tensor, anchor_mask: Tensor,
                  negative_classes: Tensor, queue_feats: Tensor,
                  queue_labels: Tensor, temperature: float) -> _SupConTerms:
    """The per-anchor SupCon terms behind :func:`dual_threshold_supcon_loss`
    (same arguments)."""
    n = feats.shape[0]
    num_classes = negative_classes.shape[1]
    if (feats.dim() != 2 or labels.shape != (n, )
            or anchor_mask.shape != (n, ) or negative_classes.dim() != 2
            or negative_classes.shape[0] != n):
        raise ValueError(
            'expected feats (N, D), labels (N,), anchor_mask (N,), '
            f'negative_classes (N, K); got {tuple(feats.shape)}, '
            f'{tuple(labels.shape)}, {tuple(anchor_mask.shape)}, '
            f'{tuple(negative_classes.shape)}')
    if (queue_feats.dim() != 2 or queue_feats.shape[1] != feats.shape[1]
            or queue_labels.shape != queue_feats.shape[:1]):
        raise ValueError(
            f'expected queue_feats (M, {feats.shape[1]}) and queue_labels '
            f'(M,); got {tuple(queue_feats.shape)}, '
            f'{tuple(queue_labels.shape)}')
    if temperature <= 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')

    anchor_idx = anchor_mask.nonzero(as_tuple=True)[0]
    if anchor_idx.numel() == 0:
        return _SupConTerms(feats.new_zeros(0), 0)
    anchor_labels = labels[anchor_idx]  # (A,)
    if bool(((anchor_labels < 0) | (anchor_labels >= num_classes)).any()):
        raise ValueError(f'anchor labels must be in [0, {num_classes}), got '
                         f'{anchor_labels.unique().tolist()}')

    # Relations of each anchor to the batch samples (A, N) ...
    same = anchor_labels[:, None] == labels[None, :]
    is_anchor = anchor_mask[None, :]
    not_self = anchor_idx[:, None] != torch.arange(n, device=feats.device)
    pos_batch = is_anchor & same & not_self
    # ... where a non-anchor (ambiguous) sample is only ever a negative, for
    # the classes it is confidently not.
    neg_batch = (is_anchor & ~same) | (
        ~is_anchor & negative_classes.t()[anchor_labels])
    # ... and to the queue (A, M): the queue holds labelled/reliable samples.
    same_q = anchor_labels[:, None] == queue_labels[None, :]
    pos = torch.cat([pos_batch, same_q], dim=1)
    neg = torch.cat([neg_batch, ~same_q], dim=1)

    has_pos = pos.any(dim=1)
    num_anchors = int(has_pos.sum())
    if num_anchors == 0:
        return _SupConTerms(feats.new_zeros(0), 0)
    # Keep only anchors with a positive: their denominators are non-empty,
    # so the masked logsumexp below is finite (no NaN in the backward).
    pos, neg = pos[has_pos], neg[has_pos]
    keys = torch.cat([feats, queue_feats.to(feats.dtype).detach()], dim=0)
    logits = feats[anchor_idx[has_pos]] @ keys.t() / temperature
    log_denom = logits.masked_fill(~(pos | neg),
                                   float('-inf')).logsumexp(dim=1)
    log_prob = logits - log_denom[:, None]
    per_anchor = -torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(
        dim=1) / pos.sum(dim=1)
    return _SupConTerms(per_anchor, num_anchors)


def dual_threshold_supcon_loss(feats: Tensor, labels: Tensor,
                               anchor_mask: Tensor, negative_classes: Tensor,
                               queue_feats: Tensor, queue_labels: Tensor,
                               temperature: float) -> Tensor:
    """Supervised contrastive loss with dual-threshold negatives and a queue.

    Anchors are the samples in ``anchor_mask`` (labelled, or reliable
    unlabelled). For an anchor ``i`` of class ``y_i``:

    * positives ``P_i``: the other anchors of class ``y_i`` and the queue
      entries of class ``y_i``;
    * negatives ``N_i``: anchors and queue entries of other classes, and the
      non-anchor (ambiguous) samples ``j`` with ``negative_classes[j, y_i]``.

    A non-anchor sample is never a positive; with ``negative_classes`` all
    False it does not enter the loss at all (unreliable samples).

    .. math::

        L_i = -\\frac{1}{|P_i|} \\sum_{p \\in P_i} \\log
              \\frac{\\exp(s_{ip} / T)}{\\sum_{a \\in P_i \\cup N_i}
              \\exp(s_{ia} / T)}

    with ``s`` the dot product of the (L2-normalised, so cosine) embeddings,
    averaged over the anchors with ``|P_i| > 0``. Computed with a masked
    logsumexp, so it is stable for small temperatures.

    Args:
        feats (Tensor): (N, D) L2-normalised embeddings of the batch.
        labels (LongTensor): (N,) class per sample; read only for anchors.
        anchor_mask (BoolTensor): (N,) labelled or reliable samples.
        negative_classes (BoolTensor): (N, K) classes each ambiguous sample
            is confidently not; all False for the other samples.
        queue_feats (Tensor): (M, D) L2-normalised queued embeddings (no
            gradient flows into them); M may be 0.
        queue_labels (LongTensor): (M,) their classes.
        temperature (float): Softmax temperature ``T`` > 0.

    Returns:
        Tensor: Scalar loss; ``feats.sum() * 0`` (graph kept, DDP-safe) when
        no anchor has a positive.
    """
    terms = _supcon_terms(feats, labels, anchor_mask, negative_classes,
                          queue_feats, queue_labels, temperature)
    if terms.num_anchors == 0:
        return feats.sum() * 0
    return terms.per_anchor.mean()


def _gather_rows(x: Tensor) -> Tensor:
    """Concatenate ``x`` (n_r, ...) from every rank, where n_r may differ
    per rank (padded to the largest for ``all_gather``). Returns ``x`` itself
    in a single process."""
    if dist.get_world_size() == 1:
        return x
    sizes = dist.all_gather(x.new_tensor([x.shape[0]], dtype=torch.long))
    sizes = [int(s) for s in sizes]
    padded = x.new_zeros((max(sizes), ) + tuple(x.shape[1:]))
    padded[:x.shape[0]] = x
    gathered = dist.all_gather(padded)
    return torch.cat([g[:s] for g, s in zip(gathered, sizes)], dim=0)


@MODELS.register_module()
class DualThresholdSupConLoss(nn.Module):
    """Image-level dual-threshold SupCon loss with a per-class memory queue.

    Wraps :func:`dual_threshold_supcon_loss`. The queue holds, per class, the
    ``queue_size_per_class`` most recent detached embeddings that were passed
    to :meth:`enqueue`; it is a set of registered buffers (``queue_feats``
    (K, Q, D), ``queue_ptr`` (K,), ``queue_count`` (K,)), so it is saved in
    and resumed from checkpoints. Call :meth:`forward` first, then
    :meth:`enqueue` with the same step's anchors, so a sample is never its own
    positive through the queue.

    ``steps_without_pairs`` (a buffer) counts consecutive forward calls in
    which no anchor had a positive (the loss was 0); a warning-worthy state
    when it grows.

    Args:
        num_classes (int): Number of image classes K.
        feat_dim (int): Embedding dimension D.
        queue_size_per_class (int): Queue length Q per class; 0 disables the
            queue. Defaults to 64.
        temperature (float): Softmax temperature. Defaults to 0.1.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        loss_name (str): Name of the loss item, must start with ``loss_``.
            Defaults to 'loss_con_img'.
    """

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 queue_size_per_class: int = 64,
                 temperature: float = 0.1,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_con_img') -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1 or queue_size_per_class < 0:
            raise ValueError(
                'need num_classes >= 1, feat_dim >= 1 and '
                f'queue_size_per_class >= 0, got num_classes={num_classes}, '
                f'feat_dim={feat_dim}, '
                f'queue_size_per_class={queue_size_per_class}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if not loss_name.startswith('loss_'):
            raise ValueError("loss_name must start with 'loss_' so MMEngine "
                             f'sums it, got {loss_name!r}')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.queue_size_per_class = queue_size_per_class
        self.temperature = temperature
        self.loss_weight = loss_weight
        self._loss_name = loss_name
        self.register_buffer(
            'queue_feats',
            torch.zeros(num_classes, queue_size_per_class, feat_dim))
        self.register_buffer('queue_ptr',
                             torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('queue_count',
                             torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('steps_without_pairs',
                             torch.zeros((), dtype=torch.long))

    @property
    def loss_name(self) -> str:
        """Name of the loss item in the loss dict."""
        return self._loss_name

    def queued(self):
        """The filled queue slots as ``(feats (M, D), labels (M,))``."""
        slots = torch.arange(self.queue_size_per_class,
                             device=self.queue_feats.device)
        filled = slots[None, :] < self.queue_count[:, None]  # (K, Q)
        labels = torch.arange(
            self.num_classes, device=self.queue_feats.device)[:, None]
        return (self.queue_feats[filled],
                labels.expand_as(filled)[filled])

    def forward(self, feats: Tensor, labels: Tensor, anchor_mask: Tensor,
                negative_classes: Tensor) -> Tensor:
        """Weighted loss of the batch against itself and the queue.

        Args:
            feats (Tensor): (N, D) embeddings (L2-normalised here).
            labels (LongTensor): (N,) true or pseudo labels.
            anchor_mask (BoolTensor): (N,) labelled or reliable samples.
            negative_classes (BoolTensor): (N, K), see
                :func:`dual_threshold_supcon_loss`.

        Returns:
            Tensor: Scalar weighted loss.
        """
        if negative_classes.shape[-1] != self.num_classes:
            raise ValueError(f'negative_classes must have {self.num_classes}'
                             ' columns (one per class), got shape '
                             f'{tuple(negative_classes.shape)}')
        feats = F.normalize(feats, dim=1)
        queue_feats, queue_labels = self.queued()
        terms = _supcon_terms(feats, labels, anchor_mask, negative_classes,
                              queue_feats, queue_labels, self.temperature)
        if terms.num_anchors == 0:
            self.steps_without_pairs += 1
            return feats.sum() * 0
        self.steps_without_pairs.zero_()
        return self.loss_weight * terms.per_anchor.mean()

    @torch.no_grad()
    def enqueue(self, feats: Tensor, labels: Tensor, mask: Tensor) -> None:
        """Push the detached, L2-normalised embeddings of the ``mask``
        samples into their classes' FIFO queues, gathered from all ranks
        first under distributed training (so queues stay identical).

        Args:
            feats (Tensor): (N, D) embeddings.
            labels (LongTensor): (N,) classes; read only where ``mask``.
            mask (BoolTensor): (N,) samples to enqueue (labelled/reliable).
        """
        if self.queue_size_per_class == 0:
            return
        feats = F.normalize(feats.detach()[mask], dim=1)
        labels = labels[mask]
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(f'labels to enqueue must be in [0, '
                             f'{self.num_classes}), got '
                             f'{labels.unique().tolist()}')
        feats = _gather_rows(feats.to(self.queue_feats.dtype))
        labels = _gather_rows(labels)
        size = self.queue_size_per_class
        for cls in labels.unique().tolist():
            new = feats[labels == cls][-size:]  # only the newest Q survive
            slots = (self.queue_ptr[cls] + torch.arange(
                new.shape[0], device=new.device)) % size
            self.queue_feats[cls, slots] = new
            self.queue_ptr[cls] = (self.queue_ptr[cls] + new.shape[0]) % size
            self.queue_count[cls] = torch.clamp(
                self.queue_count[cls] + new.shape[0], max=size)
