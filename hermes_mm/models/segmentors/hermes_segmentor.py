"""Hermes: semi-supervised dual-threshold contrastive multi-task learning.

Student/teacher training of a :class:`MultiTaskSegmentor` on labelled and
unlabelled ultrasound images (arXiv 2508.02265; our reading of the method is
in ``docs/method.md``, the code layout in ``docs/architecture.md``). One
training step, as the named steps of :meth:`HermesSegmentor.loss`:

1. the EMA teacher predicts on the weak views (``no_grad``);
2. the strong views are CutMixed in-batch, the teacher's dense predictions
   alike;
3. the pseudo-labeller cuts them into reliable / ambiguous / unreliable
   zones, for pixels and for images (a :class:`PseudoLabels`);
4. the student runs on the labelled images, then on the strong views;
5. losses: supervised (``sup.``), pseudo-label (``unsup.``), dual-threshold
   contrastive (``con.``, the contrast heads) and inter-task consistency
   (``ict.``, the consistency head), each group weighted by its ramp-up.

The teacher and threshold updates run after the optimiser step, driven by
:class:`~hermes_mm.engine.hooks.TeacherThresholdUpdateHook`.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.utils import (ConfigType, OptConfigType, OptMultiConfig, SampleList,
                         add_prefix)
from torch import Tensor

from hermes_mm.registry import MODELS, TASK_UTILS
from ..pseudo_labels import PseudoLabels
from ..utils.batch_norm_stats import frozen_bn_running_stats
from ..utils.channel_check import check_channels
from ..utils.cutmix import cutmix_batch
from .multi_task_segmentor import MultiTaskOutputs
from .semi_base_segmentor import (DEFAULT_BRANCHES, DEFAULT_EMA,
                                  SemiBaseSegmentor)

# Keyword arguments of the single-file segmentor (before 2026-12), and the
# config that replaces each.
RENAMED_KEYS = {
    'seg_threshold': "pseudo_labeler=dict(seg_threshold=...)",
    'cls_threshold': "pseudo_labeler=dict(cls_threshold=...)",
    'img_projector': "img_contrast=dict(type='ImageContrastHead', "
    'projector=...)',
    'img_contrast_loss': "img_contrast=dict(type='ImageContrastHead', "
    'loss=...)',
    'pix_projector': "pix_contrast=dict(type='PixelContrastHead', "
    'projector=...)',
    'pix_contrast_loss': "pix_contrast=dict(type='PixelContrastHead', "
    'loss=...)',
    'pix_in_index': "pix_contrast=dict(in_index=...)",
    'consistency_loss': "consistency=dict(type='InterTaskConsistencyHead', "
    'loss=...)',
    'consistency_attention': 'consistency=dict(attention=...)',
    'lesion_classes': 'consistency=dict(lesion_classes=...)',
    'min_lesion_pixels': 'consistency=dict(min_lesion_pixels=...)',
    'lesion_free_background': 'nothing: removed (measured worse, '
    'docs/method.md section 3); delete the key',
    'background_index': 'nothing: removed with lesion_free_background; '
    'delete the key',
}
# State-dict prefixes of checkpoints saved before 2026-12 -> today's.
RENAMED_STATE = {
    'seg_threshold.': 'pseudo_labeler.seg_threshold.',
    'cls_threshold.': 'pseudo_labeler.cls_threshold.',
    'img_projector.': 'img_contrast.projector.',
    'img_contrast_loss.': 'img_contrast.loss_module.',
    'pix_projector.': 'pix_contrast.projector.',
    'pix_contrast_loss.': 'pix_contrast.loss_module.',
}


def reweight_losses(losses: Dict[str, Tensor],
                    weight: float) -> Dict[str, Tensor]:
    """Multiply every entry whose key contains ``loss`` by ``weight``."""
    return {
        key: value * weight if 'loss' in key else value
        for key, value in losses.items()
    }


def valid_region(data_samples: SampleList, height: int, width: int,
                 device: torch.device) -> Tensor:
    """(B, H, W) bool: True inside each image, False on batch padding
    (added at the bottom/right by ``stack_batch``; the unpadded size is
    the sample's ``img_shape``)."""
    masks = torch.zeros(
        len(data_samples), height, width, dtype=torch.bool, device=device)
    for i, sample in enumerate(data_samples):
        img_h, img_w = sample.metainfo.get('img_shape', (height, width))[:2]
        masks[i, :int(img_h), :int(img_w)] = True
    return masks


def pad_to(tensor: Tensor, height: int, width: int, value: int) -> Tensor:
    """Pad a (..., h, w) tensor at the bottom/right to (..., H, W)."""
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def hidden_targets(data_samples: SampleList, height: int, width: int,
                   ignore_index: int) -> Tuple[Optional[Tensor],
                                               Optional[Tensor]]:
    """Hidden masks (B, H, W) and labels (B,) of unlabelled samples, for
    diagnostics only; None for a part that any sample lacks."""
    masks = labels = None
    if all('hidden_sem_seg' in s for s in data_samples):
        masks = torch.stack([
            pad_to(s.hidden_sem_seg.data.squeeze(0), height, width,
                   ignore_index) for s in data_samples
        ])
    if all('hidden_label' in s for s in data_samples):
        labels = torch.cat([s.hidden_label.view(-1) for s in data_samples])
    return masks, labels


def pseudo_data_samples(data_samples: SampleList,
                        pseudo_masks: Tensor) -> SampleList:
    """Copies of ``data_samples`` (metainfo only) with ``gt_sem_seg`` set to
    ``pseudo_masks`` (B, H, W)."""
    out = []
    for sample, mask in zip(data_samples, pseudo_masks):
        new = SegDataSample(metainfo=sample.metainfo)
        new.gt_sem_seg = PixelData(data=mask[None])
        out.append(new)
    return out


@MODELS.register_module()
class HermesSegmentor(SemiBaseSegmentor):
    """Semi-supervised multi-task segmentor with an EMA teacher.

    Expects training batches from ``MultiBranchSegDataPreProcessor`` (see
    :class:`SemiBaseSegmentor`). Every optional term (``img_contrast``,
    ``pix_contrast``, ``consistency``) can be None and every weight 0,
    which is how the ablation and baseline configs remove them; with the
    unsupervised weight at 0 and no optional term this is the supervised
    model with an unused teacher.

    Args:
        segmentor, data_preprocessor, ema, branches, predict_on, init_cfg:
            As in :class:`SemiBaseSegmentor`.
        pseudo_labeler (dict): ``DualThresholdPseudoLabeler`` (class
            counts, ``ignore_index`` and ``lesion_index`` are filled in).
        unsup_weight (dict): ``RampSchedule`` of the pseudo-label losses.
        contrast_weight (dict): ``RampSchedule`` of the contrastive terms.
        consistency_weight (dict): ``RampSchedule`` of the consistency term.
        img_contrast (dict, optional): ``ImageContrastHead``.
        pix_contrast (dict, optional): ``PixelContrastHead``.
        consistency (dict, optional): ``InterTaskConsistencyHead``.
        lesion_index (int): Segmentation class index of the lesion.
        cutmix_prob (float): Probability that a strong view is CutMixed.
            Mixed views keep pixel pseudo-labels (mixed alike) but no image
            pseudo-label (the class of a mixed image is undefined).
        cutmix_area (tuple[float, float]): Box area fraction range.
        cutmix_aspect (tuple[float, float]): Box aspect ratio range.
        teacher_warmup_iters (int, optional): Until this iteration the
            teacher is a copy of the student. None: the start of
            ``unsup_weight``'s ramp.
        joint_student_forward (bool): One student forward over labelled
            images and strong views together, sharing BN statistics
            (default; adopted again on 2026-12-07 by issue 20's
            pre-registered 2400-iteration test). False: two forwards, BN
            running statistics from labelled images only (the default from
            2026-12-05 to 2026-12-07, and the supervised twin's path); see
            :meth:`student_forward`.
        lesion_share_gate (dict, optional): ``LesionShareGate``: scales the
            pixel pseudo-label losses down while the teacher's reliable
            lesion pixels fall short of the labelled lesion share. None
            (default): off.
        unmixed_image_view (bool): The student also classifies the unmixed
            strong view of every CutMixed image, so that every unlabelled
            image keeps an image-level signal (its pseudo-label loss and
            image contrast use that view; UniMatch's second view, here the
            same strong view before the paste). Costs one student forward
            of the mixed images. False (default): mixed images give no
            image-level signal.
    """

    def __init__(self,
                 segmentor: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 ema: ConfigType = DEFAULT_EMA,
                 pseudo_labeler: ConfigType = dict(
                     type='DualThresholdPseudoLabeler'),
                 unsup_weight: ConfigType = dict(type='RampSchedule'),
                 contrast_weight: ConfigType = dict(type='RampSchedule'),
                 consistency_weight: ConfigType = dict(type='RampSchedule'),
                 img_contrast: OptConfigType = None,
                 pix_contrast: OptConfigType = None,
                 consistency: OptConfigType = None,
                 lesion_index: int = 1,
                 cutmix_prob: float = 0.5,
                 cutmix_area: Tuple[float, float] = (0.02, 0.4),
                 cutmix_aspect: Tuple[float, float] = (0.3, 1 / 0.3),
                 teacher_warmup_iters: Optional[int] = None,
                 joint_student_forward: bool = True,
                 lesion_share_gate: OptConfigType = None,
                 unmixed_image_view: bool = False,
                 branches: Dict[str, str] = DEFAULT_BRANCHES,
                 predict_on: str = 'teacher',
                 init_cfg: OptMultiConfig = None,
                 **renamed):
        if renamed:
            raise TypeError(
                'HermesSegmentor config keys were renamed in 2026-12 '
                '(docs/architecture.md): ' + '; '.join(
                    f'model.{key} -> {RENAMED_KEYS.get(key, "unknown key")}'
                    for key in sorted(renamed)))
        if not 0 <= cutmix_prob <= 1:
            raise ValueError(f'cutmix_prob must be in [0, 1], got '
                             f'{cutmix_prob}')
        segmentor = copy.deepcopy(segmentor)
        segmentor.pop('data_preprocessor', None)
        img_contrast = copy.deepcopy(img_contrast)
        pix_contrast = copy.deepcopy(pix_contrast)
        # One error for every channel key that disagrees with the backbone
        # (unset ones are filled in), before anything is built.
        check_channels(
            segmentor, img_contrast and img_contrast.get('projector'),
            pix_contrast and pix_contrast.get('projector'),
            (pix_contrast or {}).get('in_index', 0),
            student_prefix='model.segmentor.',
            projector_names=dict(
                img_projector='img_contrast.projector',
                pix_projector='pix_contrast.projector'))
        self.unsup_weight = TASK_UTILS.build(unsup_weight)
        if teacher_warmup_iters is None:
            teacher_warmup_iters = self.unsup_weight.start
        super().__init__(segmentor, data_preprocessor, ema,
                         teacher_warmup_iters, branches, predict_on, init_cfg)
        self.contrast_weight = TASK_UTILS.build(contrast_weight)
        self.consistency_weight = TASK_UTILS.build(consistency_weight)
        self.ignore_index = self.student.decode_head.ignore_index
        self.lesion_index = lesion_index
        self.pseudo_labeler = MODELS.build(
            pseudo_labeler,
            default_args=dict(
                seg_num_classes=self.student.num_classes,
                cls_num_classes=self._cls_num_classes(),
                ignore_index=self.ignore_index,
                lesion_index=lesion_index))
        self.img_contrast = MODELS.build(
            img_contrast) if img_contrast else None
        self.pix_contrast = MODELS.build(
            pix_contrast, default_args=dict(
                ignore_index=self.ignore_index)) if pix_contrast else None
        self.consistency = MODELS.build(
            consistency, default_args=dict(
                lesion_index=lesion_index)) if consistency else None
        self.cutmix_prob = cutmix_prob
        self.cutmix_area = tuple(cutmix_area)
        self.cutmix_aspect = tuple(cutmix_aspect)
        self.joint_student_forward = bool(joint_student_forward)
        self.unmixed_image_view = bool(unmixed_image_view)
        self.lesion_share_gate = MODELS.build(
            lesion_share_gate) if lesion_share_gate else None
        #: Factor on every unlabelled term group's weight, set by
        #: ``UnlabelledSafetyNetHook`` (1.0 without it).
        self.unlabelled_scale = 1.0
        self._register_load_state_dict_pre_hook(self._rename_old_state)

    def _cls_num_classes(self) -> int:
        num_classes = getattr(self.student.cls_head, 'num_classes', None)
        if num_classes is None:
            raise TypeError('the classification head must expose '
                            '`num_classes` (MMPretrain heads do)')
        return int(num_classes)

    @staticmethod
    def _rename_old_state(state_dict, prefix, *args) -> None:
        """Load checkpoints saved before 2026-12 (``RENAMED_STATE``)."""
        for key in list(state_dict):
            for old, new in RENAMED_STATE.items():
                if key.startswith(prefix + old):
                    state_dict[prefix + new + key[len(prefix + old):]] = \
                        state_dict.pop(key)
                    break

    def set_unlabelled_scale(self, scale: float) -> None:
        """Scale every unlabelled term group (pseudo-label, contrast,
        consistency) by ``scale`` in [0, 1] on top of its ramp; set by
        ``UnlabelledSafetyNetHook``."""
        if not 0 <= scale <= 1:
            raise ValueError(
                f'unlabelled_scale must be in [0, 1], got {scale}')
        self.unlabelled_scale = float(scale)

    def loss_weights(self) -> Dict[str, float]:
        """Current weights of the unsupervised term groups (ramps times
        ``unlabelled_scale``)."""
        iteration = self.require_iteration()
        scale = self.unlabelled_scale
        return dict(
            unsup=scale * self.unsup_weight(iteration),
            con=scale * self.contrast_weight(iteration),
            ict=scale * self.consistency_weight(iteration))

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> Dict[str, Tensor]:
        """Losses of one labelled + unlabelled batch (a flat dict; keys
        with ``loss`` are summed by MMEngine)."""
        weights = self.loss_weights()
        sup_x, weak_x, strong_x, sup_ds, strong_ds = self.unpack_branches(
            inputs, data_samples)
        sup_labels = torch.cat([s.gt_label.view(-1) for s in sup_ds])
        gt_masks = self.student.stack_gt_masks(sup_ds)
        teacher = self.teacher_predictions(weak_x, strong_ds)
        plain_x = strong_x
        strong_x, teacher, mixed = self.mix_strong_views(strong_x, teacher)
        pseudo = self.pseudo_labeler(
            mixed=mixed, labelled_labels=sup_labels, labelled_masks=gt_masks,
            **teacher)
        pseudo.unmixed_image_views = self.unmixed_image_view
        self.pseudo_labeler.record(pseudo, weak_x, strong_x)
        sup_out, unsup_out, image_out = self.student_outputs(
            sup_x, strong_x, plain_x, mixed)
        outputs = MultiTaskOutputs.cat(sup_out, unsup_out)

        seg_gate = None if self.lesion_share_gate is None else \
            self.lesion_share_gate(gt_masks, pseudo.masks, pseudo.region,
                                   self.lesion_index, self.ignore_index)
        losses = add_prefix(
            self.student.supervised_losses(sup_out, sup_ds), 'sup')
        unsup = self.unsupervised_losses(unsup_out, pseudo, strong_ds,
                                         seg_gate, image_out.cls_logits)
        con = dict()
        if self.img_contrast is not None:
            con.update(
                self.img_contrast.loss(
                    torch.cat([sup_out.task_feats.cls_vec,
                               image_out.task_feats.cls_vec]), sup_labels,
                    pseudo))
        if self.pix_contrast is not None:
            con.update(
                self.pix_contrast.loss(outputs.task_feats.seg_feats,
                                       gt_masks, pseudo))
        ict = dict() if self.consistency is None else self.consistency.loss(
            self.student, outputs, gt_masks, pseudo)
        for group, terms in (('unsup', unsup), ('con', con), ('ict', ict)):
            losses.update(
                add_prefix(reweight_losses(terms, weights[group]), group))
        losses.update(self.pseudo_labeler.diagnostics(pseudo))
        if seg_gate is not None:
            losses['gate.lesion_share'] = seg_gate
        return losses

    @torch.no_grad()
    def teacher_forward(self, weak_inputs: Tensor) -> MultiTaskOutputs:
        """The teacher's raw outputs on the weak views (what
        :meth:`teacher_predictions` turns into probabilities; a subclass
        that also needs the teacher's features overrides this)."""
        return self.teacher.module.forward_train(weak_inputs)

    @torch.no_grad()
    def teacher_predictions(self, weak_inputs: Tensor,
                            data_samples: SampleList) -> Dict[str, Tensor]:
        """The teacher on the weak views: ``seg_probs`` (B, C, H, W) at
        input size, ``cls_probs`` (B, K), ``region`` (B, H, W) bool, and
        the hidden annotations when the unlabelled set has them
        (``hidden_masks`` / ``hidden_labels``, else None)."""
        teacher = self.teacher.module
        height, width = weak_inputs.shape[2:]
        outputs = self.teacher_forward(weak_inputs)
        masks, labels = hidden_targets(data_samples, height, width,
                                       self.ignore_index)
        return dict(
            seg_probs=teacher.seg_probabilities(outputs.seg_logits,
                                                (height, width)),
            cls_probs=outputs.cls_logits.softmax(dim=1),
            region=valid_region(data_samples, height, width,
                                weak_inputs.device),
            hidden_masks=masks,
            hidden_labels=labels)

    def mix_strong_views(
            self, strong_inputs: Tensor, teacher: Dict[str, Tensor]
    ) -> Tuple[Tensor, Dict[str, Tensor], Tensor]:
        """CutMix the strong views and every dense teacher output alike;
        returns the mixed views, the mixed outputs and the (B,) mixed
        mask."""
        dense = [
            key for key in ('seg_probs', 'region', 'hidden_masks')
            if teacher[key] is not None
        ]
        mixed_x, mixed_targets, mixed = cutmix_batch(
            strong_inputs, [teacher[key].float() for key in dense],
            self.cutmix_prob, self.cutmix_area, self.cutmix_aspect)
        teacher = dict(teacher, **dict(zip(dense, mixed_targets)))
        teacher['region'] = teacher['region'] > 0.5
        if teacher['hidden_masks'] is not None:
            teacher['hidden_masks'] = teacher['hidden_masks'].long()
        return mixed_x, teacher, mixed

    def student_forward(self, sup_x: Tensor, strong_x: Tensor
                        ) -> Tuple[MultiTaskOutputs, MultiTaskOutputs]:
        """Student outputs on the labelled images and the strong views.

        ``joint_student_forward=True`` (default): one forward over both,
        so BN batch and running statistics (eval mode, and the teacher's via
        ``update_buffers``) come from labelled images and strong views
        together; during the warm-up a step is the supervised step of that
        joint batch (losses on the labelled slice only). Issue 20's
        2400-iteration test on four synthetic styles adopted it over two
        forwards: lesion Dice +1.4 to +7.4 on three of four styles (-0.1
        on the fourth) and accuracy +0.7 to +5.6 on all four (amendment 26
        stage 2 of ``benchmarks/results/PREREGISTRATION_styles.md``),
        although at 1200 iterations it had slowed the warm-up on
        ``crowded`` (``research/warmup_collapse/README.md``).

        ``False``: the labelled images are forwarded alone, so their BN
        batch statistics and the BN running statistics come from labelled
        images only; the strong views follow in a second forward that
        normalises with its own batch statistics and leaves the running
        statistics untouched. Unlabelled data then cannot move the
        supervised path before a pseudo-label is used: during the warm-up
        the student is the supervised model (the twin
        ``hermes_unlabelled_off`` uses this path).
        """
        if self.joint_student_forward:
            outputs = self.student.forward_train(torch.cat([sup_x, strong_x]))
            num_sup = sup_x.shape[0]
            return (outputs.slice(0, num_sup),
                    outputs.slice(num_sup, outputs.cls_logits.shape[0]))
        try:
            sup_out = self.student.forward_train(sup_x)
            with frozen_bn_running_stats(self.student):
                unsup_out = self.student.forward_train(strong_x)
        except ValueError as err:
            if 'more than 1 value per channel' not in str(err):
                raise
            raise ValueError(
                f'{err}. With joint_student_forward=False the labelled '
                f'images ({sup_x.shape[0]} per step here) and the strong '
                f'views ({strong_x.shape[0]}) each form their own BN batch, '
                'and a BN layer in train mode cannot normalise one value '
                'per channel (e.g. the 1x1 pooling branch of UPerHead/PSP '
                'with one image). Use at least 2 labelled and 2 unlabelled '
                'images per GPU (labeled_per_batch / unlabeled_per_batch), '
                'SyncBN under distributed training, or '
                'model.joint_student_forward=True (one forward over both; '
                'the strong views then also shape the BN statistics)'
            ) from err
        return sup_out, unsup_out

    def student_outputs(
        self, sup_x: Tensor, strong_x: Tensor, plain_x: Tensor, mixed: Tensor
    ) -> Tuple[MultiTaskOutputs, MultiTaskOutputs, MultiTaskOutputs]:
        """:meth:`student_forward` on the labelled images and the (mixed)
        strong views, with ``unmixed_image_view`` also on the mixed images'
        strong views before the paste (``plain_x[mixed]``, appended to the
        strong batch). Returns the labelled outputs, the strong views'
        outputs and the image-level outputs: the strong views' with the
        unmixed views' ``cls_logits`` / ``cls_vec`` in the mixed rows."""
        extra_x = plain_x[mixed] if self.unmixed_image_view else plain_x[:0]
        sup_out, unsup_out = self.student_forward(
            sup_x, torch.cat([strong_x, extra_x]))
        num_unsup = strong_x.shape[0]
        unsup_out, extra_out = unsup_out.slice(0, num_unsup), unsup_out.slice(
            num_unsup, num_unsup + extra_x.shape[0])
        image_out = unsup_out.with_image_level(
            mixed & self.unmixed_image_view, extra_out)
        return sup_out, unsup_out, image_out

    def unsupervised_losses(self, outputs: MultiTaskOutputs,
                            pseudo: PseudoLabels, data_samples: SampleList,
                            seg_gate: Optional[Tensor] = None,
                            cls_logits: Optional[Tensor] = None
                            ) -> Dict[str, Tensor]:
        """Pseudo-label losses on the strong views (reliable zone only).

        Segmentation uses the decode head's own losses (e.g. CE + Dice) with
        unreliable pixels set to ``ignore_index`` (with MMSeg's default
        ``avg_non_ignore=False`` the CE is averaged over all pixels, so it
        scales with the reliable fraction, as FixMatch's masked mean does),
        scaled by ``seg_gate`` (``LesionShareGate``'s output) when given;
        classification uses the classification head's loss with a
        per-image weight, averaged over all unlabelled images (FixMatch's
        normalisation), on ``cls_logits`` when given (the image-level
        view's), else on ``outputs``'.
        """
        seg_losses = self.student.seg_losses(
            outputs.seg_logits, pseudo_data_samples(data_samples,
                                                    pseudo.masks))
        # The decode head's accuracy against pseudo-labels is meaningless
        # (100 when every pixel is ignored): keep the losses only.
        losses = add_prefix(
            {k: v
             for k, v in seg_losses.items() if 'loss' in k}, 'seg')
        if seg_gate is not None:
            losses = reweight_losses(losses, seg_gate)
        weight = pseudo.cls_reliable.float()
        losses[f'cls.{self.student.cls_loss_name}'] = \
            self.student.cls_head.loss_module(
                outputs.cls_logits if cls_logits is None else cls_logits,
                pseudo.cls_zones.pseudo_label,
                weight=weight,
                avg_factor=max(weight.numel(), 1))
        return losses
