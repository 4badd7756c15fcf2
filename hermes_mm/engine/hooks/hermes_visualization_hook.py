"""When hermes_mm draws: validation/test panels and training pseudo-labels.

Like MMSeg's ``SegVisualizationHook`` this hook only decides *when* and
*what*; :class:`~hermes_mm.visualization.HermesVisualizer` draws, and the
model's pseudo-labeller keeps the pseudo-labels it is asked for
(``DualThresholdPseudoLabeler.record_next`` / ``last_record``).
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import mmengine.fileio as fileio
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.structures import SegDataSample

from hermes_mm.registry import HOOKS
from hermes_mm.utils.image_io import decode_image
from hermes_mm.visualization.drawing import class_text, denormalize, zone_map


def image_key(data_sample: SegDataSample) -> str:
    """A name unique within a data set: ``img_rel`` (else the file name),
    without extension, POSIX separators."""
    key = data_sample.metainfo.get('img_rel') or osp.basename(
        data_sample.metainfo.get('img_path', ''))
    return osp.splitext(key.replace('\\', '/'))[0]


def unwrap(model):
    """The model inside a DDP/other wrapper."""
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class HermesVisualizationHook(SegVisualizationHook):
    """Draw validation/test panels and training pseudo-label panels.

    - Validation / test, every ``interval`` batches:
      ``image | ground truth | prediction`` per image (its path written on
      the image panel), sent to every visualizer backend under the tag
      ``<mode>_<predictor>_<k>``: ``predictor`` is Hermes' ``predict_on``
      (``TeacherStudentValLoop`` draws both networks) and ``k`` counts the
      drawn images of one loop, up to ``max_val_panels``. The data order
      is fixed, so a tag follows one image across validations, and a
      real data set makes at most ``max_val_panels`` tags per network
      (TensorBoard / W&B), not one per image.
    - Test with ``test_out_dir``: the same panel is written to
      ``test_out_dir/<img_rel>.png`` instead, one file per test image
      (``tools/test.py --show-dir``); subfolders keep images with the same
      file name apart.
    - Training, every ``pseudo_label_interval`` iterations: the hook asks
      the model to keep that step's pseudo-labels
      (``model.pseudo_labeler.record_next = True`` before the step; it
      stores detached CPU copies in ``model.pseudo_labeler.last_record``),
      then draws ``weak view | strong view | zones`` for up to
      ``max_pseudo_label_images`` unlabelled images, named
      ``train_pseudo_label_<i>``. Other iterations cost nothing.

    Nothing is drawn when ``draw`` is False (MMSeg's default).

    Args:
        draw (bool): Master switch.
        interval (int): Validation/test batches between drawings.
        show (bool): Display panels in a window (no backends).
        wait_time (float): Display time (s).
        backend_args (dict, optional): File backend for reading images.
        pseudo_label_interval (int): Training iterations between
            pseudo-label panels; 0 switches them off.
        max_pseudo_label_images (int): Unlabelled images drawn each time.
        max_val_panels (int): Validation/test images sent to the backends
            per loop and network (tags ``<mode>_<predictor>_0`` ...).
            Files written to ``test_out_dir`` are not limited.
        test_out_dir (str, optional): Write test panels here as
            ``<img_rel>.png``.
    """

    priority = 'NORMAL'

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 show: bool = False,
                 wait_time: float = 0.,
                 backend_args: Optional[dict] = None,
                 pseudo_label_interval: int = 0,
                 max_pseudo_label_images: int = 4,
                 max_val_panels: int = 8,
                 test_out_dir: Optional[str] = None) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        if pseudo_label_interval < 0:
            raise ValueError('pseudo_label_interval must be >= 0 (0 = off), '
                             f'got {pseudo_label_interval}')
        if max_pseudo_label_images < 1:
            raise ValueError('max_pseudo_label_images must be >= 1, got '
                             f'{max_pseudo_label_images}')
        if max_val_panels < 0:
            raise ValueError('max_val_panels must be >= 0 (0 = none to the '
                             f'backends), got {max_val_panels}')
        super().__init__(
            draw=draw,
            interval=interval,
            show=show,
            wait_time=wait_time,
            backend_args=backend_args)
        self.pseudo_label_interval = pseudo_label_interval
        self.max_pseudo_label_images = max_pseudo_label_images
        self.max_val_panels = max_val_panels
        self.test_out_dir = test_out_dir
        # (mode, predictor) -> images sent to the backends in this loop
        self._panel_counts: Dict[Tuple[str, str], int] = {}

    def before_val(self, runner) -> None:
        """Restart the panel tags (``val_teacher_0`` ...)."""
        self._panel_counts = {}

    def before_test(self, runner) -> None:
        """Restart the panel tags (``test_teacher_0`` ...)."""
        self._panel_counts = {}

    def _panel_tag(self, mode: str, predictor: Optional[str]) -> Optional[str]:
        """The next tag of this loop, or None once ``max_val_panels`` are
        out."""
        slot = (mode, predictor or '')
        count = self._panel_counts.get(slot, 0)
        if count >= self.max_val_panels:
            return None
        self._panel_counts[slot] = count + 1
        return '_'.join(part for part in (mode, predictor, str(count))
                        if part)

    # ------------------------------------------------------------------
    # validation / test
    # ------------------------------------------------------------------
    def _after_iter(self,
                    runner,
                    batch_idx: int,
                    data_batch: dict,
                    outputs: Sequence[SegDataSample],
                    mode: str = 'val') -> None:
        """Draw ``image | ground truth | prediction`` for a val/test batch."""
        if not self.draw or mode == 'train':
            return
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        predictor = getattr(unwrap(runner.model), 'predict_on', None)
        for output in outputs:
            img_path = output.metainfo.get('img_path')
            if not img_path:
                continue
            key = image_key(output)
            out_file = title = None
            if mode == 'test' and self.test_out_dir:
                out_file = osp.join(self.test_out_dir, f'{key}.png')
                name = key
            else:
                name = self._panel_tag(mode, predictor)
                title = key
                if name is None:
                    continue
            # as LoadImageAsStored reads it (no EXIF rotation, bit depth)
            img = decode_image(
                fileio.get(img_path, backend_args=self.backend_args),
                channel_order='rgb')
            self._visualizer.add_datasample(
                name,
                img,
                data_sample=output,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=runner.iter,
                # MMSeg's SegLocalVisualizer takes no title
                **(dict(title=title) if title and hasattr(
                    self._visualizer, 'draw_multitask') else {}))

    # ------------------------------------------------------------------
    # training: pseudo-label panels
    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        """Switch pseudo-label panels off for models that have none."""
        if not (self.draw and self.pseudo_label_interval):
            return
        model = unwrap(runner.model)
        if not hasattr(getattr(model, 'pseudo_labeler', None),
                       'record_next'):
            print_log(
                f'{type(model).__name__} keeps no pseudo-labels (only '
                'HermesSegmentor does): pseudo-label panels are off.',
                logger='current',
                level=30)
            self.pseudo_label_interval = 0
        elif not hasattr(self._visualizer, 'add_pseudo_labels'):
            raise TypeError(
                'pseudo-label panels need visualizer=dict(type='
                f"'HermesVisualizer', ...), got "
                f'{type(self._visualizer).__name__}')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Ask the model to keep this step's pseudo-labels when due."""
        if (self.draw and self.pseudo_label_interval
                and self.every_n_train_iters(runner,
                                             self.pseudo_label_interval)):
            unwrap(runner.model).pseudo_labeler.record_next = True

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Draw the pseudo-labels the model kept, then release them."""
        model = unwrap(runner.model)
        labeler = getattr(model, 'pseudo_labeler', None)
        record = getattr(labeler, 'last_record', None)
        if not self.draw or record is None:
            return
        labeler.last_record = None
        self.draw_pseudo_labels(runner, model, record)

    def draw_pseudo_labels(self, runner, model, record: dict) -> None:
        """``weak | strong | zones`` panels for the first images."""
        preprocessor = model.data_preprocessor
        mean = getattr(preprocessor, 'mean', None)
        std = getattr(preprocessor, 'std', None)
        is_rgb = bool(getattr(preprocessor, '_channel_conversion', False))
        lesion_index = getattr(model, 'lesion_index', 1)
        count = min(self.max_pseudo_label_images,
                    record['weak_inputs'].shape[0])
        num_classes = record['cls_probs'].shape[1]
        names = self._visualizer.class_names(num_classes)
        for i in range(count):
            zones = zone_map(record['seg_reliable'][i],
                             record['seg_ambiguous'][i],
                             record['seg_pseudo_label'][i],
                             record['region'][i], lesion_index)
            probs = record['cls_probs'][i]
            label = int(probs.argmax())
            zone = ('reliable' if bool(record['cls_reliable'][i]) else
                    'ambiguous'
                    if bool(record['cls_ambiguous'][i]) else 'unreliable')
            text = f'{class_text(names[label], float(probs[label]))} {zone}'
            if bool(record['mixed'][i]):
                text += ' (cutmix)'
            self._visualizer.add_pseudo_labels(
                f'train_pseudo_label_{i}',
                denormalize(record['weak_inputs'][i], mean, std, is_rgb),
                denormalize(record['strong_inputs'][i], mean, std, is_rgb),
                zones,
                text=text,
                step=runner.iter + 1)


__all__ = ['HermesVisualizationHook', 'image_key']
