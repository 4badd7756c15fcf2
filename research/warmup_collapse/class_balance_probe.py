"""Where would ``ClassBalancedDualThreshold`` put the lesion pixel threshold
of a trained Hermes teacher, and what would the lesion pseudo-labels be
worth there?

One-off study for issue 20 (see README.md beside this file). Loads a Hermes
checkpoint, runs its EMA teacher on the weak views of ``BATCHES`` training
batches (the unlabelled images, whose hidden masks the synthetic set keeps),
accumulates the per-class confidence histogram and the labelled lesion
share, and applies the policy's balancing step to the checkpoint's own
thresholds. Prints, at the checkpoint's lesion threshold and at the
balanced one: the reliable lesion pseudo-labels' share of the labelled
lesion share, their precision and their recall against the hidden masks.

    python research/warmup_collapse/class_balance_probe.py CONFIG CHECKPOINT
"""
import sys

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import hermes_mm  # noqa: F401
from hermes_mm.models.pseudo_labels import (ClassBalancedDualThreshold,
                                            confidence_histogram,
                                            dual_threshold_zones,
                                            flatten_pixels)

BATCHES = 25
BINS = 50


def lesion_quality(conf, pred, hidden, threshold, lesion=1):
    """Share, precision and recall of pixels labelled lesion at >= thr."""
    chosen = (pred == lesion) & (conf >= threshold)
    truth = hidden == lesion
    tp = (chosen & truth).sum().item()
    return dict(n=chosen.sum().item(),
                precision=round(100 * tp / max(chosen.sum().item(), 1), 1),
                recall=round(100 * tp / max(truth.sum().item(), 1), 1))


def main(cfg_path, checkpoint, min_high=0.6):
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = '/tmp/class_balance_probe'
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(checkpoint)
    model = runner.model
    model.eval()
    labeller = model.pseudo_labeler
    adaptive = labeller.seg_threshold
    hist = torch.zeros(2, BINS)
    labelled = torch.zeros(2)
    confs, preds, hiddens = [], [], []
    batches = iter(runner.train_dataloader)
    for _ in range(BATCHES):
        data = model.data_preprocessor(next(batches), True)
        sup_x, weak_x, strong_x, sup_ds, strong_ds = model.unpack_branches(
            data['inputs'], data['data_samples'])
        with torch.no_grad():
            teacher = model.teacher_predictions(weak_x, strong_ds)
        zones = dual_threshold_zones(flatten_pixels(teacher['seg_probs']),
                                     *adaptive.thresholds())
        region = teacher['region'].flatten()
        hist += confidence_histogram(zones, 2, BINS, region)
        masks = model.student.stack_gt_masks(sup_ds).flatten()
        labelled += torch.bincount(masks[masks < 2], minlength=2).float()
        confs.append(zones.confidence[region])
        preds.append(zones.pseudo_label[region])
        hiddens.append(teacher['hidden_masks'].flatten()[region])
    conf, pred, hidden = (torch.cat(x) for x in (confs, preds, hiddens))
    low, high = adaptive.thresholds()
    policy = ClassBalancedDualThreshold(
        2, tau_low=low.clone(), tau_high=high.clone(),
        momentum=adaptive.momentum,
        margin=adaptive.margin, high_range=adaptive.high_range,
        low_floor=adaptive.low_floor, min_high=min_high, histogram_bins=BINS)
    policy.global_confidence.copy_(adaptive.global_confidence)
    policy.class_confidence.copy_(adaptive.class_confidence)
    policy.histogram.copy_(hist)
    policy.labelled_share.copy_(labelled / labelled.sum())
    policy.initialised.fill_(True)
    policy._balance()
    share_l = float(labelled[1] / labelled.sum())
    total = float(hist.sum())
    print(f'{checkpoint}\n  labelled lesion share {100 * share_l:.1f}%, '
          f'thresholds (low, high): checkpoint {low.tolist()} {high.tolist()}'
          f' -> balanced {policy.tau_low.tolist()} {policy.tau_high.tolist()}')
    for name, thr in (('checkpoint', float(high[1])),
                      ('balanced', float(policy.tau_high[1]))):
        q = lesion_quality(conf, pred, hidden, thr)
        print(f'  {name:10s} thr {thr:.2f}: reliable lesion = '
              f'{100 * q["n"] / total / share_l:.0f}% of the labelled share,'
              f' precision {q["precision"]}%, recall {q["recall"]}%')


if __name__ == '__main__':
    main(*sys.argv[1:3])
