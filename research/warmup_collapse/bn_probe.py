"""Does re-estimating BN running statistics on labelled images rescue a
Hermes checkpoint whose eval-mode student predicts no lesion?

One-off study for issue 20 (see README.md beside this file). Loads a Hermes
checkpoint, validates the student (eval mode) with the running statistics
as saved, then after re-estimating every BN layer's running statistics
(cumulative average over 30 training batches, train mode, no gradient) on
one branch of the training batches at a time: the labelled images
(``sup``), the strong views, the weak views.

    python research/warmup_collapse/bn_probe.py CONFIG CHECKPOINT
"""
import sys

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

import hermes_mm  # noqa: F401

KEYS = ('seg/dice', 'seg/dice_lesion', 'cls/accuracy')
CALIBRATION_BATCHES = 30


def validate(runner, model):
    model.eval()
    evaluator = runner.val_evaluator
    for data in runner.val_dataloader:
        with torch.no_grad():
            evaluator.process(model.val_step(data), data)
    metrics = evaluator.evaluate(len(runner.val_dataloader.dataset))
    return {k: round(metrics[k], 2) for k in KEYS}


def recalibrate(runner, model, branch):
    for layer in model.student.modules():
        if isinstance(layer, _BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average
    model.student.train()
    batches = iter(runner.train_dataloader)
    for _ in range(CALIBRATION_BATCHES):
        data = model.data_preprocessor(next(batches), True)
        with torch.no_grad():
            model.student.forward_train(data['inputs'][branch])


def main(cfg_path, checkpoint):
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = '/tmp/bn_probe'
    cfg.model.predict_on = 'student'
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(checkpoint)
    model = runner.model
    print('running stats as saved', validate(runner, model))
    for branch in ('sup', 'unsup_strong', 'unsup_weak'):
        recalibrate(runner, model, branch)
        print(f're-estimated on {branch:12s}', validate(runner, model))


if __name__ == '__main__':
    main(*sys.argv[1:3])
