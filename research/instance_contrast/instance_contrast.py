"""A label-free image-level term with teacher-side keys (MoCo-style).

Issue 20, after amendment 21 items 1 and 2: the 1/8-label teacher's image
pseudo-labels cannot be repaired by selection, and its class errors
(normal images called benign) are in the features, so every image-level
signal Hermes takes from the unlabelled images is only as good as that
teacher. This candidate adds one that needs no pseudo-label: each
unlabelled image's student embedding (its unmixed strong view) must be
closer to the teacher's embedding of the *same* image (its weak view)
than to the teacher's embeddings of other images (the batch and a queue
of earlier keys): InfoNCE as in MoCo (He et al., CVPR 2020,
https://arxiv.org/abs/1911.05722), with the EMA teacher as the key
encoder (the issue's "teacher-side contrastive keys") and a momentum copy
of the query projector as the key projector.

:class:`InstanceContrastHermes` is :class:`HermesSegmentor` as shipped
plus this term, in the ``con`` group (the contrast ramp), logged as
``con.loss_inst``. Rows whose strong view was CutMixed and has no unmixed
image-level view (``unmixed_image_view=False``) show parts of two images
and are left out.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from hermes_mm.models.segmentors.hermes_segmentor import (HermesSegmentor,
                                                          reweight_losses)
from hermes_mm.registry import MODELS


@MODELS.register_module()
class InstanceContrastHead(BaseModule):
    """InfoNCE between student queries and teacher keys of the same images.

    Args:
        projector (dict): ``ProjectionHead`` on the classification vector
            (the query projector, trained).
        temperature (float): Softmax temperature. Defaults to 0.2.
        queue_size (int): Earlier keys kept as negatives (0: the batch's
            other images only). Under distributed training each process
            keeps its own queue of its own keys (not gathered across
            ranks, unlike ``DualThresholdSupConLoss``'s; research code).
            Defaults to 256.
        key_momentum (float): EMA momentum of the key projector, updated
            from the query projector before each call. Defaults to 0.99.
        loss_name (str): Name of the logged loss. Defaults to 'loss_inst'.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 projector: dict,
                 temperature: float = 0.2,
                 queue_size: int = 256,
                 key_momentum: float = 0.99,
                 loss_name: str = 'loss_inst',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if queue_size < 0:
            raise ValueError(f'queue_size must be >= 0, got {queue_size}')
        if not 0.0 <= key_momentum < 1.0:
            raise ValueError(
                f'key_momentum must be in [0, 1), got {key_momentum}')
        self.projector = MODELS.build(projector)
        self.key_projector = copy.deepcopy(self.projector)
        for p in self.key_projector.parameters():
            p.requires_grad_(False)
        self.temperature = float(temperature)
        self.key_momentum = float(key_momentum)
        self.loss_name = loss_name
        dim = self.projector.out_channels
        self.register_buffer('queue', torch.zeros(queue_size, dim))
        self.register_buffer('queue_ptr', torch.zeros((), dtype=torch.long))
        self.register_buffer('queue_len', torch.zeros((), dtype=torch.long))

    def init_weights(self) -> None:
        super().init_weights()
        self.key_projector.load_state_dict(self.projector.state_dict())

    @torch.no_grad()
    def update_key_projector(self) -> None:
        """``key = m * key + (1 - m) * query`` (parameters and buffers)."""
        m = self.key_momentum
        for k, q in zip(self.key_projector.state_dict().values(),
                        self.projector.state_dict().values()):
            if k.dtype.is_floating_point:
                k.mul_(m).add_(q.detach(), alpha=1 - m)
            else:
                k.copy_(q)

    def logits(self, queries: Tensor, keys: Tensor) -> Tensor:
        """(N, N + queue) similarities / temperature: column i of row i is
        the positive, the other batch keys and the queue the negatives."""
        # a copy: the queue is overwritten in place after this step
        negatives = self.queue[:int(self.queue_len)].clone()
        return torch.cat([queries @ keys.t(), queries @ negatives.t()],
                         dim=1) / self.temperature

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        size = self.queue.shape[0]
        if size == 0:
            return
        keys = keys[-size:]
        slots = (self.queue_ptr + torch.arange(
            keys.shape[0], device=keys.device)) % size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)
        self.queue_len.copy_(torch.clamp(self.queue_len + keys.shape[0],
                                         max=size))

    def loss(self, query_vec: Tensor, key_vec: Tensor) -> Dict[str, Tensor]:
        """The term on (N, C) student and (N, C) teacher classification
        vectors, row i of both from the same image; then the queue update.
        With no row the loss is a zero that keeps the graph."""
        if query_vec.shape != key_vec.shape:
            raise ValueError('query and key vectors must pair up row by '
                             f'row, got {tuple(query_vec.shape)} and '
                             f'{tuple(key_vec.shape)}')
        if query_vec.shape[0] == 0:
            zero = sum(p.sum() for p in self.projector.parameters()) * 0.0
            return {self.loss_name: zero}
        self.update_key_projector()
        queries = F.normalize(self.projector(query_vec), dim=1)
        with torch.no_grad():
            self.key_projector.train(self.projector.training)
            keys = F.normalize(self.key_projector(key_vec.detach()), dim=1)
        logits = self.logits(queries, keys)
        target = torch.arange(queries.shape[0], device=queries.device)
        loss = F.cross_entropy(logits, target)
        self.enqueue(keys)
        return {self.loss_name: loss}


@MODELS.register_module()
class InstanceContrastHermes(HermesSegmentor):
    """:class:`HermesSegmentor` plus :class:`InstanceContrastHead` on the
    unlabelled images (teacher: weak view; student: the image-level strong
    view), weighted by the ``con`` ramp.

    Args:
        inst_contrast (dict): ``InstanceContrastHead``.
        **kwargs: :class:`HermesSegmentor`'s arguments.
    """

    def __init__(self, inst_contrast: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inst_contrast = MODELS.build(inst_contrast)
        self._teacher_vec: Optional[Tensor] = None
        self._mixed: Optional[Tensor] = None
        self._image_vec: Optional[Tensor] = None

    def teacher_forward(self, weak_inputs: Tensor):
        outputs = super().teacher_forward(weak_inputs)
        self._teacher_vec = outputs.task_feats.cls_vec
        return outputs

    def mix_strong_views(self, strong_inputs: Tensor,
                         teacher: Dict[str, Tensor]):
        mixed_x, teacher, mixed = super().mix_strong_views(
            strong_inputs, teacher)
        self._mixed = mixed
        return mixed_x, teacher, mixed

    def student_outputs(self, *args, **kwargs):
        sup_out, unsup_out, image_out = super().student_outputs(
            *args, **kwargs)
        self._image_vec = image_out.task_feats.cls_vec
        return sup_out, unsup_out, image_out

    def instance_pairs(self) -> Tuple[Tensor, Tensor]:
        """(query, key) rows of this step: every unlabelled image whose
        image-level view shows that image alone."""
        clean = ~self._mixed | self.unmixed_image_view
        return self._image_vec[clean], self._teacher_vec[clean]

    def loss(self, inputs, data_samples) -> Dict[str, Tensor]:
        self._teacher_vec = self._mixed = self._image_vec = None
        losses = super().loss(inputs, data_samples)
        try:
            query, key = self.instance_pairs()
            term = self.inst_contrast.loss(query, key)
        finally:
            self._teacher_vec = self._mixed = self._image_vec = None
        weight = self.loss_weights()['con']
        losses.update({f'con.{k}': v
                       for k, v in reweight_losses(term, weight).items()})
        return losses
