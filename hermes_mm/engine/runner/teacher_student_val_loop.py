"""Validate both networks of a teacher/student model."""
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop

from hermes_mm.registry import LOOPS


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Run validation once per network and prefix the metrics.

    For a model with ``predict_on`` and ``PREDICTORS`` (``HermesSegmentor``)
    the validation set is evaluated with each network in turn and metrics
    are reported as ``teacher/seg/dice``, ``student/seg/dice``, ...; for any
    other model it is MMEngine's ``ValLoop``. Adapted from MMDetection's
    ``TeacherStudentValLoop``.
    """

    def run(self) -> dict:
        """Launch validation of every predictor."""
        model = self.runner.model
        if is_model_wrapper(model):
            model = model.module
        if not hasattr(model, 'predict_on'):
            return super().run()
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        original = model.predict_on
        metrics = dict()
        try:
            for name in model.PREDICTORS:
                model.predict_on = name
                for idx, data_batch in enumerate(self.dataloader):
                    self.run_iter(idx, data_batch)
                results = self.evaluator.evaluate(len(self.dataloader.dataset))
                metrics.update(
                    {f'{name}/{key}': value
                     for key, value in results.items()})
        finally:
            model.predict_on = original
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics
