"""A decoupled pseudo-label head: debiased self-training's first half.

Issue 20, amendment 31 of ``benchmarks/results/PREREGISTRATION_styles.md``.
In shipped Hermes the image pseudo-labels of the unlabelled images train
the same classification head that, through the EMA teacher, makes the next
pseudo-labels and the predictions, so every pseudo-label error feeds the
head that repeats it. Debiased Self-Training (Chen et al., NeurIPS 2022,
https://arxiv.org/abs/2202.07136) decouples the two: the pseudo-labels
train a separate, parameter-independent *pseudo head* on the shared
features (which they still shape, through it); the main head learns from
labelled images only, and it alone makes pseudo-labels and predictions.

:class:`PseudoHeadHermes` is :class:`HermesSegmentor` as shipped with that
one change: the unlabelled image pseudo-label cross-entropy
(``unsup.cls.loss_cls``) is computed on the pseudo head's logits of the
student's image-level classification vector. Everything else is the
shipped method: the pseudo-labels (the teacher's main head on the weak
views), their weight and ramp, the segmentation, contrast and consistency
terms (the consistency term's CAM keeps the main head's weights), and
inference. DST's second half (the worst-case estimation) is not included.
"""
import copy
from dataclasses import replace
from typing import Optional

from hermes_mm.models.segmentors.hermes_segmentor import HermesSegmentor
from hermes_mm.registry import MODELS


@MODELS.register_module()
class PseudoHeadHermes(HermesSegmentor):
    """:class:`HermesSegmentor` whose image pseudo-labels train a separate
    classification head (``pseudo_cls_head``), not the main one.

    The pseudo head is a student-only module: the EMA teacher (a copy of
    ``segmentor``) has none, so pseudo-labels and predictions come from the
    main head as in shipped Hermes.

    Args:
        pseudo_cls_head (dict, optional): The pseudo head, a classification
            head taking ``(cls_vec,)`` with the main head's number of
            classes. None (default): a fresh head built from the main
            head's config (``segmentor.cls_head``).
        **kwargs: :class:`HermesSegmentor`'s arguments.
    """

    def __init__(self, pseudo_cls_head: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if pseudo_cls_head is None:
            pseudo_cls_head = kwargs['segmentor']['cls_head']
        self.pseudo_cls_head = MODELS.build(copy.deepcopy(pseudo_cls_head))
        got = getattr(self.pseudo_cls_head, 'num_classes', None)
        if got != self._cls_num_classes():
            raise ValueError(
                f'model.pseudo_cls_head must predict the main head\'s '
                f'{self._cls_num_classes()} classes '
                f'(model.segmentor.cls_head.num_classes), got num_classes='
                f'{got}')

    def student_outputs(self, *args, **kwargs):
        """As :meth:`HermesSegmentor.student_outputs`, with the image-level
        outputs' ``cls_logits`` (what the image pseudo-label loss uses)
        from the pseudo head on the same classification vectors."""
        sup_out, unsup_out, image_out = super().student_outputs(
            *args, **kwargs)
        pseudo_logits = self.pseudo_cls_head((image_out.task_feats.cls_vec, ))
        return sup_out, unsup_out, replace(image_out, cls_logits=pseudo_logits)
