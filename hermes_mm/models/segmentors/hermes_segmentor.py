"""Hermes: semi-supervised dual-threshold contrastive multi-task learning.

Student/teacher training of a :class:`MultiTaskSegmentor` on labelled and
unlabelled ultrasound images (arXiv 2508.02265; our reading of the method is
in ``docs/method.md``). One training step:

1. the EMA teacher labels the weak views (``no_grad``), and dual thresholds
   split its predictions into reliable / ambiguous / unreliable zones, for
   pixels and for images;
2. strong views are CutMixed in-batch, their dense targets alike;
3. one student forward runs over labelled + strong unlabelled images;
4. losses: supervised (``sup.``), pseudo-label (``unsup.``), dual-threshold
   contrastive (``con.``) and inter-task consistency (``ict.``), each group
   weighted by its ramp-up.

The teacher update, threshold update and iteration count are driven by
:class:`~hermes_mm.engine.hooks.DualThresholdPseudoLabelHook`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from mmengine.model import BaseModule
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample
from mmseg.utils import (ConfigType, OptConfigType, OptMultiConfig, SampleList,
                         add_prefix)
from torch import Tensor

from hermes_mm.registry import MODELS, TASK_UTILS
from ..utils.cutmix import cutmix_batch
from ..utils.dual_threshold import Zones, dual_threshold_zones
from ..utils.batch_norm_stats import frozen_bn_running_stats
from ..utils.channel_check import check_channels
from ..utils.finite_losses import FiniteLossesMixin
from .multi_task_segmentor import MultiTaskOutputs, MultiTaskSegmentor


def reweight_losses(losses: Dict[str, Tensor],
                    weight: float) -> Dict[str, Tensor]:
    """Multiply every entry whose key contains ``loss`` by ``weight``."""
    return {
        key: value * weight if 'loss' in key else value
        for key, value in losses.items()
    }


def valid_region(data_samples: SampleList, height: int, width: int,
                 device: torch.device) -> Tensor:
    """(B, H, W) bool: True inside each image, False on batch padding.

    Batch padding is added at the bottom/right by ``stack_batch``; the
    unpadded size is the sample's ``img_shape``.
    """
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
    """Hidden masks (B, H, W) and labels (B,) of unlabelled samples.

    They exist only when the unlabelled set has annotations, and serve
    diagnostics (pseudo-label precision) only. Returns None for a part that
    is missing in any sample.
    """
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


def flatten_pixels(dense: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, C)."""
    return dense.permute(0, 2, 3, 1).reshape(-1, dense.shape[1])


def gather_pixels(dense: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of :func:`flatten_pixels` ``(dense)``, (U, C), without
    materialising the (B*H*W, C) matrix."""
    area = dense.shape[2] * dense.shape[3]
    return dense.flatten(2)[index // area, :, index % area]


def clear_lesion_free(pseudo_masks: Tensor, lesion_free: Tensor,
                      lesion_index: int, background_index: int) -> Tensor:
    """Pixel pseudo-labels with the lesion of lesion-free images removed.

    Args:
        pseudo_masks (LongTensor): (B, H, W) pixel pseudo-labels
            (``ignore_index`` where not reliable).
        lesion_free (BoolTensor): (B,) images the teacher reliably
            classifies into a class without a lesion.
        lesion_index (int): Segmentation class of the lesion.
        background_index (int): Segmentation class of the background.

    Returns:
        LongTensor: A copy where the lesion pixels of ``lesion_free`` images
        are background; ignored pixels stay ignored.
    """
    drop = lesion_free.view(-1, 1, 1) & (pseudo_masks == lesion_index)
    return torch.where(drop, torch.full_like(pseudo_masks, background_index),
                       pseudo_masks)


def confidence_stats(zones: Zones, num_classes: int,
                     valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Per predicted class: summed confidence and count of ``valid`` samples.

    Summed (not averaged) so that ranks can be combined with an all-reduce.
    """
    confidence, labels = zones.confidence, zones.pseudo_label
    if valid is not None:
        confidence, labels = confidence[valid], labels[valid]
    sums = torch.zeros(num_classes, device=confidence.device)
    counts = torch.zeros(num_classes, device=confidence.device)
    sums.index_add_(0, labels, confidence.float())
    counts.index_add_(0, labels,
                      torch.ones_like(confidence, dtype=torch.float))
    return sums, counts


@MODELS.register_module()
class HermesSegmentor(FiniteLossesMixin, BaseSegmentor):
    """Semi-supervised multi-task segmentor with an EMA teacher.

    Expects training batches from ``MultiBranchSegDataPreProcessor``:
    ``inputs``/``data_samples`` dicts with the labelled branch and the weak
    and strong unlabelled branches (names in ``branches``). Validation and
    test batches are plain and go to the teacher (or the student, see
    ``predict_on``).

    Every optional component (``img_projector`` + ``img_contrast_loss``,
    ``pix_projector`` + ``pix_contrast_loss``, ``consistency_loss``) can be
    set to None, and every weight to 0, which is how the ablation and
    baseline configs remove them; with the unsupervised weight at 0 and no
    optional term this is the supervised model with an unused teacher.

    Args:
        segmentor (dict): The student, a ``MultiTaskSegmentor`` config
            (its ``data_preprocessor`` is ignored: this model's is used).
        data_preprocessor (dict): Usually ``MultiBranchSegDataPreProcessor``.
        ema (dict): The teacher, an MMEngine averaged model built around
            the student. MMEngine's ``momentum`` is the weight of the
            *student*: ``teacher = (1 - momentum) * teacher + momentum *
            student``, so 0.001 is a 0.999 EMA decay. ``update_buffers=True``
            also averages BN running statistics, so the teacher's BN
            statistics match its averaged weights.
        seg_threshold (dict): Dual-threshold policy for pixels
            (``num_classes`` is filled in).
        cls_threshold (dict): Dual-threshold policy for images.
        unsup_weight (dict): ``RampSchedule`` of the pseudo-label losses.
        contrast_weight (dict): ``RampSchedule`` of the contrastive losses.
        consistency_weight (dict): ``RampSchedule`` of the consistency loss.
        img_projector (dict, optional): Projection head on ``cls_vec``.
        img_contrast_loss (dict, optional): ``DualThresholdSupConLoss``.
        pix_projector (dict, optional): Pixel projection head on
            ``seg_feats[pix_in_index]``.
        pix_contrast_loss (dict, optional): ``PixelContrastLoss``.
        consistency_loss (dict, optional): ``InterTaskConsistencyLoss``.
        pix_in_index (int): Segmentation feature level for pixel embeddings.
        consistency_attention (str): Classification-branch attention used
            by the consistency loss: 'cam' (CAM of the predicted lesion
            class, needs a linear classifier) or 'saliency' (the ITAS map).
        lesion_classes (sequence[int], optional): Indices of the image
            classes that have a lesion (CAM class choice); None = all.
        lesion_index (int): Segmentation class index of the lesion.
        min_lesion_pixels (int): A strong view counts as "has a lesion" for
            the consistency loss if its pseudo-label has at least this many
            reliable lesion pixels.
        lesion_free_background (bool): Inter-task pseudo-labels: on an
            unmixed unlabelled image whose image pseudo-label is reliable
            and of a class outside ``lesion_classes`` (BUSI: normal), the
            reliable "lesion" pixels become background pseudo-labels. The
            teacher's false lesions on lesion-free images (ducts, cysts)
            are then trained away instead of reinforced. Needs
            ``lesion_classes``.
        background_index (int): Segmentation class of the background (for
            ``lesion_free_background``).
        cutmix_prob (float): Probability that a strong view is CutMixed.
            Mixed views keep pixel pseudo-labels (mixed alike) but their
            image pseudo-label is treated as unreliable (the class of a
            mixed image is undefined).
        cutmix_area (tuple[float, float]): Box area fraction range.
        cutmix_aspect (tuple[float, float]): Box aspect ratio range.
        teacher_warmup_iters (int, optional): Until this iteration the
            teacher is a copy of the student (supervised warm-up); EMA
            afterwards. None: the start of ``unsup_weight``'s ramp.
        joint_student_forward (bool): One student forward over labelled
            images and strong views together, sharing BN statistics (the
            behaviour before 2026-12). False (default): two forwards, the
            BN running statistics from labelled images only (see
            :meth:`student_forward`).
        lesion_share_gate (dict, optional): ``LesionShareGate``: scales the
            pixel pseudo-label losses down while the teacher's reliable
            lesion pixels fall short of the labelled lesion share (a guard
            against all-background pseudo-labels). None (default): off.
        branches (dict): Names of the ``sup``, ``weak`` and ``strong``
            branches in the batch.
        predict_on (str): 'teacher' or 'student' for predict/val/test.
        init_cfg (dict, optional): Initialisation config.
    """

    PREDICTORS = ('teacher', 'student')
    ATTENTIONS = ('cam', 'saliency')
    # Set to True (e.g. by HermesVisualizationHook) to keep detached CPU
    # copies of the next training batch's pseudo-labels in
    # ``last_pseudo_labels`` (see ``keep_pseudo_labels``); one-shot.
    record_pseudo_labels: bool = False
    last_pseudo_labels: Optional[Dict[str, Tensor]] = None

    def __init__(self,
                 segmentor: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 ema: ConfigType = dict(
                     type='ForeachExponentialMovingAverage',
                     momentum=0.001,
                     update_buffers=True),
                 seg_threshold: ConfigType = dict(
                     type='AdaptiveDualThreshold', tau_low=0.75,
                     tau_high=0.95),
                 cls_threshold: ConfigType = dict(
                     type='AdaptiveDualThreshold', tau_low=0.7,
                     tau_high=0.9),
                 unsup_weight: ConfigType = dict(type='RampSchedule'),
                 contrast_weight: ConfigType = dict(type='RampSchedule'),
                 consistency_weight: ConfigType = dict(type='RampSchedule'),
                 img_projector: OptConfigType = None,
                 img_contrast_loss: OptConfigType = None,
                 pix_projector: OptConfigType = None,
                 pix_contrast_loss: OptConfigType = None,
                 consistency_loss: OptConfigType = None,
                 pix_in_index: int = 0,
                 consistency_attention: str = 'cam',
                 lesion_classes: Optional[Sequence[int]] = None,
                 lesion_index: int = 1,
                 min_lesion_pixels: int = 1,
                 lesion_free_background: bool = False,
                 background_index: int = 0,
                 cutmix_prob: float = 0.5,
                 cutmix_area: Tuple[float, float] = (0.02, 0.4),
                 cutmix_aspect: Tuple[float, float] = (0.3, 1 / 0.3),
                 teacher_warmup_iters: Optional[int] = None,
                 joint_student_forward: bool = False,
                 lesion_share_gate: OptConfigType = None,
                 branches: Dict[str, str] = dict(
                     sup='sup', weak='unsup_weak', strong='unsup_strong'),
                 predict_on: str = 'teacher',
                 init_cfg: OptMultiConfig = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        segmentor = copy.deepcopy(segmentor)
        segmentor.pop('data_preprocessor', None)
        img_projector = copy.deepcopy(img_projector)
        pix_projector = copy.deepcopy(pix_projector)
        # One error for every channel key that disagrees with the backbone
        # (unset ones are filled in), before anything is built.
        check_channels(segmentor, img_projector, pix_projector, pix_in_index,
                       student_prefix='model.segmentor.')
        self.student: MultiTaskSegmentor = MODELS.build(segmentor)
        ema = dict(copy.deepcopy(ema))
        self.teacher = MODELS.build(ema, default_args=dict(model=self.student))

        self.seg_num_classes = self.student.num_classes
        self.cls_num_classes = self._cls_num_classes()
        self.seg_threshold = MODELS.build(
            seg_threshold,
            default_args=dict(num_classes=self.seg_num_classes))
        self.cls_threshold = MODELS.build(
            cls_threshold,
            default_args=dict(num_classes=self.cls_num_classes))
        self.unsup_weight = TASK_UTILS.build(unsup_weight)
        self.contrast_weight = TASK_UTILS.build(contrast_weight)
        self.consistency_weight = TASK_UTILS.build(consistency_weight)

        self.img_projector = self._build_pair(img_projector,
                                              img_contrast_loss, 'img')
        self.img_contrast_loss = MODELS.build(
            img_contrast_loss) if img_contrast_loss else None
        self.pix_projector = self._build_pair(pix_projector,
                                              pix_contrast_loss, 'pix')
        self.pix_contrast_loss = MODELS.build(
            pix_contrast_loss) if pix_contrast_loss else None
        self.consistency_loss = MODELS.build(
            consistency_loss) if consistency_loss else None

        if consistency_attention not in self.ATTENTIONS:
            raise ValueError(f'consistency_attention must be one of '
                             f'{self.ATTENTIONS}, got '
                             f'{consistency_attention!r}')
        if predict_on not in self.PREDICTORS:
            raise ValueError(f'predict_on must be one of {self.PREDICTORS}, '
                             f'got {predict_on!r}')
        if not 0 <= cutmix_prob <= 1:
            raise ValueError(f'cutmix_prob must be in [0, 1], got '
                             f'{cutmix_prob}')
        missing = {'sup', 'weak', 'strong'} - set(branches)
        if missing:
            raise ValueError(f'branches needs keys sup, weak and strong; '
                             f'missing {sorted(missing)} in {branches}')
        self.pix_in_index = pix_in_index
        self.consistency_attention = consistency_attention
        self.lesion_classes = None if lesion_classes is None else list(
            lesion_classes)
        self.lesion_index = lesion_index
        self.min_lesion_pixels = min_lesion_pixels
        if lesion_free_background and self.lesion_classes is None:
            raise ValueError(
                'lesion_free_background=True needs lesion_classes (the '
                'image classes that have a lesion, e.g. (0, 1) for BUSI '
                'benign/malignant): the other classes are lesion-free')
        if background_index == lesion_index:
            raise ValueError(f'background_index and lesion_index must '
                             f'differ, both are {lesion_index}')
        self.lesion_free_background = lesion_free_background
        self.background_index = background_index
        self.cutmix_prob = cutmix_prob
        self.cutmix_area = tuple(cutmix_area)
        self.cutmix_aspect = tuple(cutmix_aspect)
        if teacher_warmup_iters is None:
            teacher_warmup_iters = self.unsup_weight.start
        if teacher_warmup_iters < 0:
            raise ValueError('teacher_warmup_iters must be >= 0, got '
                             f'{teacher_warmup_iters}')
        self.teacher_warmup_iters = int(teacher_warmup_iters)
        self.joint_student_forward = bool(joint_student_forward)
        self.lesion_share_gate = MODELS.build(
            lesion_share_gate) if lesion_share_gate else None
        self.branches = dict(branches)
        self.predict_on = predict_on
        self.ignore_index = self.student.decode_head.ignore_index

        # Set by DualThresholdPseudoLabelHook before every training step.
        self.iteration: Optional[int] = None
        # Filled by loss(), consumed by the hook after the step.
        self.threshold_stats: Dict[str, Tuple[Tensor, Tensor]] = {}
        self.pseudo_label_stats: Dict[str, Tuple[float, float]] = {}
        self.teacher.train(False)

    # ------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------
    def _cls_num_classes(self) -> int:
        num_classes = getattr(self.student.cls_head, 'num_classes', None)
        if num_classes is None:
            raise TypeError('the classification head must expose '
                            '`num_classes` (MMPretrain heads do)')
        return int(num_classes)

    @staticmethod
    def _build_pair(projector: OptConfigType, loss: OptConfigType,
                    name: str) -> Optional[BaseModule]:
        if (projector is None) != (loss is None):
            raise ValueError(f'{name}_projector and {name}_contrast_loss must '
                             'be given together (or both None to switch the '
                             f'{name}-level contrastive term off)')
        return MODELS.build(projector) if projector is not None else None

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as its copy."""
        super().init_weights()
        self.teacher.module.load_state_dict(self.student.state_dict())

    def train(self, mode: bool = True) -> 'HermesSegmentor':
        """Set the student's mode; the teacher always stays in eval mode.

        MMEngine's ``IterBasedTrainLoop`` calls ``model.train()`` every
        iteration, which would otherwise put the teacher's BN and dropout
        in training mode.
        """
        super().train(mode)
        self.teacher.train(False)
        return self

    # ------------------------------------------------------------------
    # called by DualThresholdPseudoLabelHook
    # ------------------------------------------------------------------
    def set_iteration(self, iteration: int) -> None:
        """Tell the model which (0-based) iteration is about to run."""
        self.iteration = int(iteration)

    def loss_weights(self) -> Dict[str, float]:
        """Current weights of the unsupervised term groups."""
        iteration = self._require_iteration()
        return dict(
            unsup=self.unsup_weight(iteration),
            con=self.contrast_weight(iteration),
            ict=self.consistency_weight(iteration))

    @torch.no_grad()
    def update_teacher(self, iteration: Optional[int] = None) -> None:
        """Move the teacher towards the student after a training step.

        During the supervised warm-up (``iteration < teacher_warmup_iters``)
        the teacher is a copy of the student: its pseudo-labels are not used
        yet, and an EMA started from the random initial weights would lag
        the student for ~1/momentum iterations after the warm-up. Afterwards
        it is one EMA step (``ema``).

        MMEngine's averaged model keeps a dict of views on the teacher's
        tensors, built once; a deep copy of the model (or anything that
        replaces those tensors) would leave the dict pointing at stale
        tensors and the teacher silently frozen, so it is refreshed here.

        Args:
            iteration (int, optional): The (0-based) iteration that just
                finished; None means "after the warm-up" (an EMA step).
        """
        self.teacher.avg_parameters = (
            self.teacher.module.state_dict() if self.teacher.update_buffers
            else dict(self.teacher.module.named_parameters()))
        if iteration is not None and iteration < self.teacher_warmup_iters:
            self.teacher.module.load_state_dict(self.student.state_dict())
            self.teacher.steps += 1
            return
        self.teacher.update_parameters(self.student)

    @torch.no_grad()
    def update_thresholds(self, iteration: int) -> None:
        """Update both threshold policies from the last step's statistics.

        Statistics are summed across ranks first, so every rank holds the
        same thresholds.
        """
        for task, policy in (('seg', self.seg_threshold),
                             ('cls', self.cls_threshold)):
            if task not in self.threshold_stats:
                continue
            sums, counts = self.threshold_stats[task]
            sums, counts = sums.clone(), counts.clone()
            all_reduce(sums, op='sum')
            all_reduce(counts, op='sum')
            policy.update(sums, counts, iteration)
        self.threshold_stats = {}

    def _require_iteration(self) -> int:
        if self.iteration is None:
            raise RuntimeError(
                'HermesSegmentor needs DualThresholdPseudoLabelHook in '
                "custom_hooks (custom_hooks=[dict(type='DualThreshold"
                "PseudoLabelHook')]): it sets the iteration, updates the "
                'teacher and the thresholds.')
        return self.iteration

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> Dict[str, Tensor]:
        """Losses of one labelled + unlabelled batch.

        Args:
            inputs (dict[str, Tensor]): Normalised images per branch.
            data_samples (dict[str, list]): Samples per branch.

        Returns:
            dict[str, Tensor]: Flat dict; keys with ``loss`` are summed.
        """
        weights = self.loss_weights()
        sup_x, weak_x, strong_x, sup_ds, strong_ds = self._unpack(
            inputs, data_samples)
        teacher = self.teacher_pseudo_labels(weak_x, strong_ds)
        strong_x, teacher = self.mix_strong_views(strong_x, teacher)
        self.keep_pseudo_labels(weak_x, strong_x, teacher)
        sup_out, unsup_out = self.student_forward(sup_x, strong_x)
        outputs = MultiTaskOutputs.cat(sup_out, unsup_out)

        seg_gate = None if self.lesion_share_gate is None else \
            self.lesion_share_gate(
                self.student.stack_gt_masks(sup_ds), teacher['pseudo_masks'],
                teacher['region'], self.lesion_index, self.ignore_index)
        losses = add_prefix(
            self.student.supervised_losses(sup_out, sup_ds), 'sup')
        losses.update(
            add_prefix(
                reweight_losses(
                    self.unsupervised_losses(unsup_out, teacher, strong_ds,
                                             seg_gate),
                    weights['unsup']), 'unsup'))
        losses.update(
            add_prefix(
                reweight_losses(
                    self.contrastive_losses(outputs, teacher, sup_ds),
                    weights['con']), 'con'))
        losses.update(
            add_prefix(
                reweight_losses(
                    self.inter_task_losses(outputs, teacher, sup_ds),
                    weights['ict']), 'ict'))
        losses.update(self.pseudo_label_diagnostics(teacher))
        if seg_gate is not None:
            losses['gate.lesion_share'] = seg_gate
        return losses

    def student_forward(self, sup_x: Tensor, strong_x: Tensor
                        ) -> Tuple[MultiTaskOutputs, MultiTaskOutputs]:
        """Student outputs on the labelled images and the strong views.

        With ``joint_student_forward=False`` (default) the labelled images
        are forwarded alone, so their BN batch statistics and the BN
        running statistics (eval mode, and the teacher's via
        ``update_buffers``) come from labelled images only; the strong
        views follow in a second forward that normalises with its own batch
        statistics and leaves the running statistics untouched. Unlabelled
        data then cannot move the supervised path before a pseudo-label is
        used: during the warm-up the student is the supervised model.
        ``True``: one forward over both (the pre-2026-12 behaviour), which
        slowed the warm-up's learning of the lesion on the ``crowded``
        synthetic style (``research/warmup_collapse/README.md``).
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

    def _unpack(self, inputs, data_samples):
        if not isinstance(inputs, dict):
            raise TypeError(
                'HermesSegmentor trains on multi-branch batches; use '
                'MultiBranchSegDataPreProcessor and a MultiBranch pipeline '
                f'(got inputs of type {type(inputs).__name__})')
        names = self.branches
        missing = [
            names[key] for key in ('sup', 'weak', 'strong')
            if names[key] not in inputs
        ]
        if missing:
            raise KeyError(
                f'training batch has no {missing} branch(es) (has '
                f'{sorted(inputs)}); every batch needs labelled and '
                'unlabelled images: use MultiSourceRatioSampler')
        return (inputs[names['sup']], inputs[names['weak']],
                inputs[names['strong']], data_samples[names['sup']],
                data_samples[names['strong']])

    @torch.no_grad()
    def teacher_pseudo_labels(self, weak_inputs: Tensor,
                              data_samples: SampleList) -> Dict[str, Tensor]:
        """The teacher's predictions on the weak views.

        Returns:
            dict: ``seg_probs`` (B, C, H, W) at input size, ``cls_probs``
            (B, K), ``region`` (B, H, W) bool (not batch padding), and when
            the unlabelled set has hidden annotations ``hidden_masks``
            (B, H, W) / ``hidden_labels`` (B,), for diagnostics only.
        """
        teacher: MultiTaskSegmentor = self.teacher.module
        height, width = weak_inputs.shape[2:]
        outputs = teacher.forward_train(weak_inputs)
        result = dict(
            seg_probs=teacher.seg_probabilities(outputs.seg_logits,
                                                (height, width)),
            cls_probs=outputs.cls_logits.softmax(dim=1),
            region=valid_region(data_samples, height, width,
                                weak_inputs.device).float())
        masks, labels = hidden_targets(data_samples, height, width,
                                       self.ignore_index)
        if masks is not None:
            result['hidden_masks'] = masks.float()
        if labels is not None:
            result['hidden_labels'] = labels
        return result

    def mix_strong_views(
            self, strong_inputs: Tensor,
            teacher: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """CutMix the strong views and every dense teacher target alike."""
        dense_keys = [
            key for key in ('seg_probs', 'region', 'hidden_masks')
            if key in teacher
        ]
        mixed_x, mixed_targets, mixed = cutmix_batch(
            strong_inputs, [teacher[key] for key in dense_keys],
            self.cutmix_prob, self.cutmix_area, self.cutmix_aspect)
        teacher = dict(teacher, **dict(zip(dense_keys, mixed_targets)))
        teacher['region'] = teacher['region'] > 0.5
        if 'hidden_masks' in teacher:
            teacher['hidden_masks'] = teacher['hidden_masks'].long()
        teacher['mixed'] = mixed
        teacher.update(self.select_pseudo_labels(teacher))
        return mixed_x, teacher

    def select_pseudo_labels(self,
                             teacher: Dict[str, Tensor]) -> Dict[str, object]:
        """Dual-threshold zones for pixels and images (pure selection)."""
        seg_probs = teacher['seg_probs']
        batch, _, height, width = seg_probs.shape
        seg_zones = dual_threshold_zones(
            flatten_pixels(seg_probs), *self.seg_threshold.thresholds())
        cls_zones = dual_threshold_zones(teacher['cls_probs'],
                                         *self.cls_threshold.thresholds())
        region = teacher['region'].flatten()
        # A mixed image has no single class: never a reliable image label.
        cls_usable = ~teacher['mixed']
        self.threshold_stats = dict(
            seg=confidence_stats(seg_zones, self.seg_num_classes, region),
            cls=confidence_stats(cls_zones, self.cls_num_classes))
        pseudo_masks = torch.where(
            seg_zones.reliable & region, seg_zones.pseudo_label,
            torch.full_like(seg_zones.pseudo_label,
                            self.ignore_index)).view(batch, height, width)
        if self.lesion_free_background:
            lesion_class = torch.zeros(
                self.cls_num_classes, dtype=torch.bool,
                device=cls_usable.device)
            lesion_class[self.lesion_classes] = True
            lesion_free = (cls_zones.reliable & cls_usable
                           & ~lesion_class[cls_zones.pseudo_label])
            pseudo_masks = clear_lesion_free(pseudo_masks, lesion_free,
                                             self.lesion_index,
                                             self.background_index)
        return dict(
            seg_zones=seg_zones,
            cls_zones=cls_zones,
            cls_usable=cls_usable,
            pseudo_masks=pseudo_masks)

    def unsupervised_losses(self, outputs: MultiTaskOutputs,
                            teacher: Dict[str, object],
                            data_samples: SampleList,
                            seg_gate: Optional[Tensor] = None
                            ) -> Dict[str, Tensor]:
        """Pseudo-label losses on the strong views (reliable zone only).

        ``seg_gate`` (``LesionShareGate``'s output, or None) scales the
        pixel pseudo-label losses.

        Segmentation uses the decode head's own losses (e.g. CE + Dice) with
        unreliable pixels set to ``ignore_index`` (with MMSeg's default
        ``avg_non_ignore=False`` the CE is averaged over all pixels, so it
        scales with the reliable fraction, as FixMatch's masked mean does);
        classification uses the
        classification head's loss with a per-image weight, averaged over
        all unlabelled images (FixMatch's normalisation).
        """
        seg_losses = self.student.seg_losses(
            outputs.seg_logits,
            pseudo_data_samples(data_samples, teacher['pseudo_masks']))
        # The decode head's accuracy against pseudo-labels is meaningless
        # (100 when every pixel is ignored): keep the losses only.
        losses = add_prefix(
            {k: v
             for k, v in seg_losses.items() if 'loss' in k}, 'seg')
        if seg_gate is not None:
            losses = reweight_losses(losses, seg_gate)
        cls_zones: Zones = teacher['cls_zones']
        weight = (cls_zones.reliable & teacher['cls_usable']).float()
        loss_cls = self.student.cls_head.loss_module(
            outputs.cls_logits,
            cls_zones.pseudo_label,
            weight=weight,
            avg_factor=max(weight.numel(), 1))
        losses[f'cls.{self.student.cls_loss_name}'] = loss_cls
        return losses

    # ------------------------------------------------------------------
    # contrastive terms
    # ------------------------------------------------------------------
    def contrastive_losses(self, outputs: MultiTaskOutputs,
                           teacher: Dict[str, object],
                           sup_ds: SampleList) -> Dict[str, Tensor]:
        """Image- and pixel-level dual-threshold contrastive losses."""
        losses = dict()
        if self.img_contrast_loss is not None:
            losses.update(
                self.image_contrastive_loss(outputs, teacher, sup_ds))
        if self.pix_contrast_loss is not None:
            losses.update(
                self.pixel_contrastive_loss(outputs, teacher, sup_ds))
        return losses

    def image_contrastive_loss(self, outputs: MultiTaskOutputs,
                               teacher: Dict[str, object],
                               sup_ds: SampleList) -> Dict[str, Tensor]:
        """SupCon over labelled (true labels) and reliable unlabelled
        (pseudo-labels) image embeddings; ambiguous images are negatives
        only; a per-class queue adds positives across iterations."""
        cls_zones: Zones = teacher['cls_zones']
        usable = teacher['cls_usable']
        sup_labels = torch.cat([s.gt_label.view(-1) for s in sup_ds])
        embeddings = self.img_projector(outputs.task_feats.cls_vec)
        labels = torch.cat([sup_labels, cls_zones.pseudo_label])
        anchors = torch.cat([
            torch.ones_like(sup_labels, dtype=torch.bool),
            cls_zones.reliable & usable
        ])
        negatives = torch.cat([
            torch.zeros(
                len(sup_labels),
                self.cls_num_classes,
                dtype=torch.bool,
                device=labels.device),
            cls_zones.negative_classes & usable[:, None]
        ])
        loss = self.img_contrast_loss(embeddings, labels, anchors, negatives)
        self.img_contrast_loss.enqueue(embeddings.detach(), labels, anchors)
        return {self.img_contrast_loss.loss_name: loss}

    def pixel_targets(self, outputs: MultiTaskOutputs,
                      teacher: Dict[str, object], sup_ds: SampleList,
                      size: Tuple[int, int]) -> Dict[str, Tensor]:
        """Per-pixel labels, anchor masks and negative classes at ``size``
        for labelled (ground truth) and unlabelled (teacher zones) images.
        """
        gt = self.student.stack_gt_masks(sup_ds)[:, None].float()
        gt = F.interpolate(gt, size=size, mode='nearest').long().flatten()
        sup_valid = gt != self.ignore_index
        probs = F.adaptive_avg_pool2d(teacher['seg_probs'], size)
        region = F.adaptive_avg_pool2d(teacher['region'][:, None].float(),
                                       size).flatten() >= 1
        low, high = self.seg_threshold.thresholds()
        zones = dual_threshold_zones(flatten_pixels(probs), low, high)
        labels = torch.cat([gt.masked_fill(~sup_valid, 0), zones.pseudo_label])
        anchors = torch.cat([sup_valid, zones.reliable & region])
        negatives = torch.cat([
            torch.zeros(
                gt.numel(),
                self.seg_num_classes,
                dtype=torch.bool,
                device=gt.device), zones.negative_classes & region[:, None]
        ])
        return dict(labels=labels, anchors=anchors, negatives=negatives)

    def pixel_contrastive_loss(self, outputs: MultiTaskOutputs,
                               teacher: Dict[str, object],
                               sup_ds: SampleList) -> Dict[str, Tensor]:
        """Pixel anchors vs. class prototypes (positive) and other-class /
        ambiguous pixels (hard negatives).

        Pixels are sampled from labels and masks first; only the sampled
        feature vectors are projected (``pix_projector.forward_pixels``) and
        compared, so time and memory stay flat as the image grows.
        """
        feats = outputs.task_feats.seg_feats[self.pix_in_index]
        targets = self.pixel_targets(outputs, teacher, sup_ds,
                                     tuple(feats.shape[2:]))
        sample = self.pix_contrast_loss.sample(targets['labels'],
                                               targets['anchors'],
                                               targets['negatives'])
        # Nothing sampled: still run the projector on one pixel so every
        # parameter is in the graph (DDP), and return 0.
        index = sample.index if sample.index.numel() else \
            sample.index.new_zeros(1)
        projected = self.pix_projector.forward_pixels(
            gather_pixels(feats, index))
        embeddings = projected[:sample.index.numel()]  # (0, D) if empty
        loss = self.pix_contrast_loss.forward_sampled(
            embeddings, sample) + projected.sum() * 0
        # Unconditional: update_prototypes all-reduces, so every rank calls
        # it every step, with an empty sample too (it then changes nothing).
        self.pix_contrast_loss.update_prototypes(
            embeddings.detach(), sample.labels, sample.anchor_mask)
        return {self.pix_contrast_loss.loss_name: loss}

    # ------------------------------------------------------------------
    # inter-task consistency
    # ------------------------------------------------------------------
    def classification_attention(self, outputs: MultiTaskOutputs) -> Tensor:
        """The classification branch's spatial attention (B, h, w) in [0, 1].

        'saliency': the ITAS saliency map. 'cam': the class activation map
        of the predicted lesion class, ReLU'd and max-normalised per image.
        """
        task_feats = outputs.task_feats
        if self.consistency_attention == 'saliency':
            if task_feats.cls_attn is None:
                raise ValueError(
                    "consistency_attention='saliency' needs a task neck with "
                    'a saliency map (ITASNeck); use \'cam\' otherwise')
            return task_feats.cls_attn[:, 0]
        cams = self.student.class_activation_maps(task_feats)
        logits = outputs.cls_logits.detach()
        if self.lesion_classes is not None:
            candidates = torch.tensor(self.lesion_classes,
                                      device=logits.device)
            chosen = candidates[logits[:, candidates].argmax(dim=1)]
        else:
            chosen = logits.argmax(dim=1)
        cam = cams[torch.arange(cams.shape[0]), chosen].relu()
        peak = cam.flatten(1).max(dim=1).values.clamp(
            min=torch.finfo(cam.dtype).eps)
        return cam / peak[:, None, None]

    def inter_task_losses(self, outputs: MultiTaskOutputs,
                          teacher: Dict[str, object],
                          sup_ds: SampleList) -> Dict[str, Tensor]:
        """Consistency between the segmentation prediction and the
        classification branch's attention, on images with a lesion."""
        if self.consistency_loss is None:
            return {}
        cls_map = outputs.task_feats.cls_map
        size = tuple(cls_map.shape[2:])
        seg_prob = self.student.seg_probabilities(
            outputs.seg_logits, size)[:, self.lesion_index]
        gt = self.student.stack_gt_masks(sup_ds)
        sup_valid = (gt == self.lesion_index).flatten(1).any(dim=1)
        unsup_valid = (teacher['pseudo_masks'] == self.lesion_index).flatten(
            1).sum(dim=1) >= self.min_lesion_pixels
        valid = torch.cat([sup_valid, unsup_valid])
        return self.consistency_loss(cls_map, seg_prob,
                                     self.classification_attention(outputs),
                                     valid)

    # ------------------------------------------------------------------
    # diagnostics
    # ------------------------------------------------------------------
    @torch.no_grad()
    def keep_pseudo_labels(self, weak_inputs: Tensor, strong_inputs: Tensor,
                           teacher: Dict[str, object]) -> None:
        """Keep CPU copies of this batch's pseudo-labels, when asked.

        A no-op unless ``record_pseudo_labels`` is True (set by a
        visualisation hook every few iterations); it is reset here, so one
        request keeps one batch. Zones are those that train the student,
        i.e. in the (CutMixed) strong view's pixels.

        Stores ``last_pseudo_labels``: ``weak_inputs`` / ``strong_inputs``
        (B, 3, H, W) normalised; ``seg_pseudo_label`` (B, H, W) long;
        ``seg_reliable`` / ``seg_ambiguous`` / ``region`` (B, H, W) bool;
        ``cls_probs`` (B, K); ``cls_reliable`` / ``cls_ambiguous`` /
        ``mixed`` (B,) bool.
        """
        if not self.record_pseudo_labels:
            return
        self.record_pseudo_labels = False
        shape = strong_inputs.shape[:1] + strong_inputs.shape[2:]
        seg_zones: Zones = teacher['seg_zones']
        cls_zones: Zones = teacher['cls_zones']
        record = dict(
            weak_inputs=weak_inputs,
            strong_inputs=strong_inputs,
            seg_pseudo_label=seg_zones.pseudo_label.view(shape),
            seg_reliable=seg_zones.reliable.view(shape),
            seg_ambiguous=seg_zones.ambiguous.view(shape),
            region=teacher['region'].view(shape),
            cls_probs=teacher['cls_probs'],
            cls_reliable=cls_zones.reliable,
            cls_ambiguous=cls_zones.ambiguous,
            mixed=teacher['mixed'])
        self.last_pseudo_labels = {
            key: value.detach().cpu()
            for key, value in record.items()
        }

    @torch.no_grad()
    def pseudo_label_diagnostics(
            self, teacher: Dict[str, object]) -> Dict[str, Tensor]:
        """Zone ratios (logged) and pseudo-label quality counts.

        ``zone.<task>.<zone>``: share of the valid pixels (in the image) or
        of the usable (unmixed) images in each zone; ``zone.cls.usable``:
        share of the unlabelled images that are usable at all.

        The counts are kept in ``pseudo_label_stats`` for the hook (which
        logs ``pl.<name>`` as a ratio over a window), when the unlabelled
        set has hidden annotations: ``name -> (numerator, denominator)``
        with names

        - ``seg.precision``, ``cls.precision``: correct / reliable, pooled
          over classes (for pixels this is dominated by the background);
        - ``seg.lesion.precision`` / ``seg.lesion.recall``: reliable lesion
          pseudo-labels that are lesion / all lesion pixels given a lesion
          pseudo-label (of the hidden lesion pixels), in the image region;
        - ``seg.lesion.as_background``: hidden lesion pixels given a
          reliable non-lesion pseudo-label, over all hidden lesion pixels
          (what trains a student towards "no lesion");
        - ``cls.<c>.precision`` / ``cls.<c>.recall``: the same per image
          class ``c``, over usable (unmixed) images with a known label.
        """
        seg_zones: Zones = teacher['seg_zones']
        cls_zones: Zones = teacher['cls_zones']
        region = teacher['region'].flatten()
        usable = teacher['cls_usable']
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
        if 'hidden_masks' in teacher:
            hidden = teacher['hidden_masks'].flatten()
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
        if 'hidden_labels' in teacher:
            hidden = teacher['hidden_labels']
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
        self.pseudo_label_stats = {
            name: (float(num), float(den))
            for name, (num, den) in zip(counts, sums)
        }
        return stats

    # ------------------------------------------------------------------
    # inference (delegated to the teacher or the student)
    # ------------------------------------------------------------------
    @property
    def predictor(self) -> MultiTaskSegmentor:
        """The network used by predict/val/test (``predict_on``)."""
        return dict(
            teacher=self.teacher.module, student=self.student)[self.predict_on]

    def predict(self,
                inputs: Tensor,
                data_samples: Optional[SampleList] = None) -> SampleList:
        """Lesion mask and image class from ``predict_on``'s network."""
        return self.predictor.predict(inputs, data_samples)

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[SampleList] = None):
        return self.predictor._forward(inputs, data_samples)

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        return self.predictor.extract_feat(inputs)

    def encode_decode(self, inputs: Tensor,
                      batch_data_samples: SampleList) -> Tensor:
        return self.predictor.encode_decode(inputs, batch_data_samples)
