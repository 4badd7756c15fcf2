"""Base class of teacher/student segmentors (MMDetection's
``SemiBaseDetector`` for :class:`MultiTaskSegmentor`).

It holds the student, the EMA teacher around it and the settings every
teacher/student method shares; a method subclasses it and writes
:meth:`loss`. What it provides:

- building: the student from ``segmentor`` (its own ``data_preprocessor``
  is dropped: this model's multi-branch one is used) and the teacher, an
  MMEngine averaged model built around it, started as its copy;
- the hook API (``TeacherThresholdUpdateHook``): :meth:`set_iteration`
  before each step, :meth:`update_teacher` after it (warm-up copy, then
  EMA: :func:`~hermes_mm.models.utils.step_teacher`);
- :meth:`unpack_branches` of a ``MultiBranchSegDataPreProcessor`` batch;
- inference through the teacher or the student (``predict_on``); the
  teacher always stays in eval mode.
"""
import copy
from typing import Dict, List, Optional, Tuple

from mmseg.models.segmentors import BaseSegmentor
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, SampleList
from torch import Tensor

from hermes_mm.registry import MODELS
from ..utils.finite_losses import FiniteLossesMixin
from ..utils.teacher_ema import step_teacher
from .multi_task_segmentor import MultiTaskSegmentor


#: The teacher: 0.999 EMA of the student (MMEngine's ``momentum`` is the
#: student's weight), BN statistics averaged too.
DEFAULT_EMA = dict(
    type='ForeachExponentialMovingAverage', momentum=0.001,
    update_buffers=True)
#: Branch names of a MultiBranchSegDataPreProcessor batch.
DEFAULT_BRANCHES = dict(sup='sup', weak='unsup_weak', strong='unsup_strong')


class SemiBaseSegmentor(FiniteLossesMixin, BaseSegmentor):
    """Student + EMA teacher; subclasses implement :meth:`loss`.

    Args:
        segmentor (dict): The student, a ``MultiTaskSegmentor`` config.
        data_preprocessor (dict): Usually ``MultiBranchSegDataPreProcessor``.
        ema (dict): The teacher, an MMEngine averaged model built around
            the student. MMEngine's ``momentum`` is the weight of the
            *student*: ``teacher = (1 - momentum) * teacher + momentum *
            student``, so 0.001 is a 0.999 EMA decay. ``update_buffers=True``
            also averages BN running statistics.
        teacher_warmup_iters (int): Until this iteration the teacher is a
            copy of the student (supervised warm-up); EMA afterwards.
        branches (dict): Names of the ``sup``, ``weak`` and ``strong``
            branches in the batch.
        predict_on (str): 'teacher' or 'student' for predict/val/test.
        init_cfg (dict, optional): Initialisation config.
    """

    PREDICTORS = ('teacher', 'student')

    def __init__(self,
                 segmentor: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 ema: ConfigType = DEFAULT_EMA,
                 teacher_warmup_iters: int = 0,
                 branches: Dict[str, str] = DEFAULT_BRANCHES,
                 predict_on: str = 'teacher',
                 init_cfg: OptMultiConfig = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if predict_on not in self.PREDICTORS:
            raise ValueError(f'predict_on must be one of {self.PREDICTORS}, '
                             f'got {predict_on!r}')
        missing = {'sup', 'weak', 'strong'} - set(branches)
        if missing:
            raise ValueError(f'branches needs keys sup, weak and strong; '
                             f'missing {sorted(missing)} in {branches}')
        if teacher_warmup_iters < 0:
            raise ValueError('teacher_warmup_iters must be >= 0, got '
                             f'{teacher_warmup_iters}')
        segmentor = copy.deepcopy(segmentor)
        segmentor.pop('data_preprocessor', None)
        self.student: MultiTaskSegmentor = MODELS.build(segmentor)
        self.teacher = MODELS.build(
            dict(copy.deepcopy(ema)), default_args=dict(model=self.student))
        self.teacher_warmup_iters = int(teacher_warmup_iters)
        self.branches = dict(branches)
        self.predict_on = predict_on
        # Set by the hook before every training step.
        self.iteration: Optional[int] = None
        self.teacher.train(False)

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as its copy."""
        super().init_weights()
        self.teacher.module.load_state_dict(self.student.state_dict())

    def train(self, mode: bool = True) -> 'SemiBaseSegmentor':
        """Set the student's mode; the teacher always stays in eval mode.

        MMEngine's ``IterBasedTrainLoop`` calls ``model.train()`` every
        iteration, which would otherwise put the teacher's BN and dropout
        in training mode.
        """
        super().train(mode)
        self.teacher.train(False)
        return self

    # ------------------------------------------------------------------
    # called by TeacherThresholdUpdateHook
    # ------------------------------------------------------------------
    def set_iteration(self, iteration: int) -> None:
        """Tell the model which (0-based) iteration is about to run."""
        self.iteration = int(iteration)

    def update_teacher(self, iteration: Optional[int] = None) -> None:
        """Move the teacher towards the student after a training step (see
        :func:`~hermes_mm.models.utils.step_teacher`)."""
        step_teacher(self.teacher, self.student, iteration,
                     self.teacher_warmup_iters)

    def require_iteration(self) -> int:
        """The current iteration; an error naming the hook if unset."""
        if self.iteration is None:
            raise RuntimeError(
                f'{type(self).__name__} needs TeacherThresholdUpdateHook in '
                "custom_hooks (custom_hooks=[dict(type='TeacherThreshold"
                "UpdateHook')]): it sets the iteration, updates the teacher "
                'and the thresholds.')
        return self.iteration

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def unpack_branches(
        self, inputs: Dict[str, Tensor], data_samples: Dict[str, SampleList]
    ) -> Tuple[Tensor, Tensor, Tensor, SampleList, SampleList]:
        """``(sup, weak, strong)`` inputs and the sup / strong samples."""
        if not isinstance(inputs, dict):
            raise TypeError(
                f'{type(self).__name__} trains on multi-branch batches; use '
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

    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> Dict[str, Tensor]:
        raise NotImplementedError

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
