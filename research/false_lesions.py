"""Where false lesions on lesion-free images come from, for one checkpoint.

A model that predicts a lesion on a lesion-free image (BUSI "normal")
scores Dice 0 on it. This diagnostic asks whether the model's own image
classifier could veto such predictions, which is what an inter-task gate
(clearing the lesion pseudo-labels of confidently lesion-free images, or
weighting pixel pseudo-labels by the image's lesion probability) relies
on. On the test set of ``CONFIG`` (by default a freshly generated
synthetic set, in the config's data style, that is neither the training
nor the quality benchmark's held-out set) it reports, with the network the
model predicts with (Hermes: the teacher):

- lesion-free images: how many get a predicted lesion (``false_lesion``),
  and on those how often the classifier says lesion-free, by argmax and
  reliably (probability >= the image threshold ``tau_high``);
- images with a lesion: how often the classifier says lesion-free (what a
  gate would wrongly erase);
- the pixel pseudo-label effect of weighting the lesion probability by
  ``1 - P(lesion-free classes)``: of the images with any reliable lesion
  pixel (``>= tau_high`` of the lesion class), the share that lose all of
  them, for lesion-free images and for images with a lesion;
- the predicted lesion area (fraction of the image) on false-lesion images
  and on lesion images, and how well it separates them (ROC AUC): the
  basis of ``test_cfg.min_lesion_area``;
- who answers "is there a lesion?" better: the classifier (argmax is a
  lesion class) or the predicted mask (any lesion pixel), and the image
  accuracy (``pred_label``): the basis of ``test_cfg.lesion_classes``. Pass
  the test options with ``--cfg-options`` (e.g.
  ``model.segmentor.test_cfg.min_lesion_area=0.02``) to measure them.

Thresholds are the checkpoint's (HermesSegmentor's adaptive state, in its
``pseudo_labeler``) unless
``--tau-pixel`` / ``--tau-image`` are given. Writes a JSON record and prints
a table::

    python research/false_lesions.py CONFIG CHECKPOINT \\
        [--num 400 --generator-seed 2000] [--out FILE.json] \\
        [--cfg-options test_dataloader.dataset.data_root=...]
"""
import argparse
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import DictAction

# the benchmark helpers (_common, quality) live in benchmarks/
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'benchmarks'))
from _common import (REPO_ROOT, environment, synthetic_test_set,  # noqa: E402
                     table, write_json)

#: Default dev set: generator seed neither the configs' (0) nor the quality
#: benchmark's held-out set's (1000).
DEV_SEED = 2000
DEV_NUM = 400


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument(
        '--num',
        type=int,
        default=DEV_NUM,
        help='synthetic configs: images generated for the test set '
        f'(default {DEV_NUM}; 0 keeps the config\'s test set)')
    p.add_argument(
        '--generator-seed',
        type=int,
        default=DEV_SEED,
        help=f'synthetic configs: generator seed (default {DEV_SEED})')
    p.add_argument(
        '--cache-dir',
        default=osp.join(REPO_ROOT, 'benchmarks', 'runs', 'cache'),
        help='where the synthetic set is generated')
    p.add_argument(
        '--lesion-free-classes',
        nargs='+',
        default=None,
        help='image classes without a lesion (default: the model\'s '
        'classes outside lesion_classes, else "normal")')
    p.add_argument('--tau-pixel', type=float, default=None)
    p.add_argument('--tau-image', type=float, default=None)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--out', default=None, help='JSON record')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='config overrides, xxx=yyy (as tools/test.py), applied last')
    return p.parse_args(argv)


def load_config(args):
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    overrides: Dict[str, Any] = {}
    dataset = cfg.test_dataloader.dataset
    if args.num and 'generator_seed' in dataset:
        # the dev set in the config's own data style (a style-study run
        # tested on the default style would measure the wrong data)
        overrides = synthetic_test_set(args.cache_dir, 'dev', args.num,
                                       args.generator_seed,
                                       dataset.get('style', 'default'))
    overrides.update(args.cfg_options)
    cfg.merge_from_dict(overrides)
    return cfg


def thresholds(model, args, lesion_index: int, lesion_free: Sequence[int]):
    """``(tau_pixel, tau_image)``: arguments first, else the checkpoint's
    adaptive thresholds (lesion class; the least strict lesion-free
    class)."""
    tau_pixel, tau_image = args.tau_pixel, args.tau_image
    labeler = getattr(model, 'pseudo_labeler', None)
    if None in (tau_pixel, tau_image) and labeler is None:
        raise SystemExit(f'{type(model).__name__} has no pseudo-label '
                         'thresholds; pass --tau-pixel and --tau-image')
    if tau_pixel is None:
        tau_pixel = float(labeler.seg_threshold.thresholds()[1][lesion_index])
    if tau_image is None:
        high = labeler.cls_threshold.thresholds()[1]
        tau_image = float(min(high[c] for c in lesion_free))
    return tau_pixel, tau_image


def per_image(samples, lesion_index: int, lesion_free: Sequence[int],
              tau_pixel: float) -> List[Dict[str, Any]]:
    """The few numbers the summary needs, per predicted sample."""
    import torch
    rows = []
    for sample in samples:
        probs = sample.seg_logits.data.float().softmax(dim=0)[lesion_index]
        pred = sample.pred_sem_seg.data[0] == lesion_index
        gt = sample.gt_sem_seg.data[0] == lesion_index
        score = sample.pred_score.float()
        p_free = float(score[list(lesion_free)].sum())
        reliable = probs >= tau_pixel
        fused = probs * (1 - p_free) >= tau_pixel
        rows.append(
            dict(
                img_path=sample.img_path,
                gt_label=int(sample.gt_label),
                pred_label=int(sample.pred_label),
                max_score=float(score.max()),
                has_lesion=bool(gt.any()),
                predicts_lesion=bool(pred.any()),
                argmax_lesion_free=int(torch.argmax(score)) in lesion_free,
                p_lesion_free=p_free,
                reliable_lesion_px=int(reliable.sum()),
                fused_reliable_lesion_px=int(fused.sum()),
                pred_lesion_area=float(pred.float().mean())))
    return rows


def share(flags: Sequence[bool]) -> Optional[float]:
    """Percentage of true flags; None for an empty list."""
    return 100.0 * float(np.mean(flags)) if len(flags) else None


def summarise(rows: List[Dict[str, Any]], tau_image: float) -> dict:
    free = [r for r in rows if not r['has_lesion']]
    lesion = [r for r in rows if r['has_lesion']]
    false = [r for r in free if r['predicts_lesion']]

    def erased(group):
        hit = [r for r in group if r['reliable_lesion_px'] > 0]
        return dict(
            images_with_reliable_lesion_px=len(hit),
            all_erased_pct=share(
                [r['fused_reliable_lesion_px'] == 0 for r in hit]))

    return dict(
        lesion_free_images=len(free),
        lesion_images=len(lesion),
        false_lesion_pct=share([r['predicts_lesion'] for r in free]),
        false_lesion_images=dict(
            n=len(false),
            argmax_lesion_free_pct=share(
                [r['argmax_lesion_free'] for r in false]),
            reliable_lesion_free_pct=share(
                [r['p_lesion_free'] >= tau_image for r in false])),
        lesion_image_classified_lesion_free=dict(
            argmax_pct=share([r['argmax_lesion_free'] for r in lesion]),
            reliable_pct=share(
                [r['p_lesion_free'] >= tau_image for r in lesion])),
        fusion_erases=dict(lesion_free=erased(free), lesion=erased(lesion)),
        predicted_area=area_separation(
            false, [r for r in lesion if r['predicts_lesion']]),
        lesion_question=dict(
            classifier_correct_pct=share([
                r['argmax_lesion_free'] != r['has_lesion'] for r in rows
            ]),
            mask_correct_pct=share(
                [r['predicts_lesion'] == r['has_lesion'] for r in rows])),
        accuracy_pct=share([r['pred_label'] == r['gt_label'] for r in rows]))


def area_separation(false: List[dict], true: List[dict]) -> dict:
    """Predicted lesion area (fraction of the image) on false-lesion
    images vs lesion images with a predicted lesion: medians and the ROC
    AUC of the area as a "true lesion" score (None without both kinds)."""
    from sklearn.metrics import roc_auc_score

    neg = [r['pred_lesion_area'] for r in false]
    pos = [r['pred_lesion_area'] for r in true]
    return dict(
        false_lesion_median=float(np.median(neg)) if neg else None,
        lesion_median=float(np.median(pos)) if pos else None,
        auc=float(roc_auc_score([0] * len(neg) + [1] * len(pos), neg + pos))
        if neg and pos else None)


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import hermes_mm  # noqa: F401
    from hermes_mm.apis import HermesInferencer

    init_default_scope('mmseg')
    cfg = load_config(args)
    inferencer = HermesInferencer(
        cfg, args.checkpoint, device='cpu', show_progress=False)
    model = inferencer.model.eval()
    names = list(inferencer.class_names)
    lesion_index = int(getattr(model, 'lesion_index', 1))
    # Hermes keeps them on its consistency head (None without one).
    lesion_classes = getattr(getattr(model, 'consistency', None),
                             'lesion_classes', None)
    if args.lesion_free_classes is not None:
        unknown = set(args.lesion_free_classes) - set(names)
        if unknown:
            raise SystemExit(f'--lesion-free-classes {sorted(unknown)} are '
                             f'not classes of the model ({names})')
        lesion_free = [names.index(n) for n in args.lesion_free_classes]
    elif lesion_classes is not None:
        lesion_free = [
            i for i in range(len(names)) if i not in lesion_classes
        ]
    elif 'normal' in names:
        lesion_free = [names.index('normal')]
    else:
        raise SystemExit(f'cannot tell the lesion-free classes of {names}; '
                         'pass --lesion-free-classes')
    tau_pixel, tau_image = thresholds(model, args, lesion_index, lesion_free)
    loader_cfg = dict(cfg.test_dataloader, batch_size=args.batch_size)
    rows: List[Dict[str, Any]] = []
    with torch.no_grad():
        for batch in Runner.build_dataloader(loader_cfg):
            rows += per_image(
                model.test_step(batch), lesion_index, lesion_free, tau_pixel)
    summary = summarise(rows, tau_image)
    record = dict(
        benchmark='false_lesions',
        config=args.config,
        checkpoint=args.checkpoint,
        test_set=dict(cfg.test_dataloader.dataset),
        lesion_free_classes=[names[i] for i in lesion_free],
        tau_pixel=tau_pixel,
        tau_image=tau_image,
        summary=summary,
        images=rows,
        environment=environment(),
        wall_time_s=time.perf_counter() - start)
    false = summary['false_lesion_images']
    wrong = summary['lesion_image_classified_lesion_free']
    fused = summary['fusion_erases']

    def pct(value):
        return '-' if value is None else f'{value:.1f}'

    def area_pct(value):
        return None if value is None else 100 * value

    area = summary['predicted_area']

    print(
        table(['quantity', 'value'], [
            ['lesion-free / lesion images',
             f'{summary["lesion_free_images"]} / '
             f'{summary["lesion_images"]}'],
            ['lesion-free images with a predicted lesion %',
             pct(summary['false_lesion_pct'])],
            ['  of those, classified lesion-free (argmax) %',
             pct(false['argmax_lesion_free_pct'])],
            [f'  of those, reliably (p >= {tau_image:.2f}) %',
             pct(false['reliable_lesion_free_pct'])],
            ['lesion images classified lesion-free (argmax) %',
             pct(wrong['argmax_pct'])],
            [f'lesion images, reliably (p >= {tau_image:.2f}) %',
             pct(wrong['reliable_pct'])],
            [f'fusion erases all reliable (>= {tau_pixel:.2f}) lesion px, '
             'lesion-free images %',
             pct(fused['lesion_free']['all_erased_pct'])],
            ['  the same, lesion images %',
             pct(fused['lesion']['all_erased_pct'])],
            ['predicted lesion area %, median: false lesions / lesions',
             f'{pct(area_pct(area["false_lesion_median"]))} / '
             f'{pct(area_pct(area["lesion_median"]))}'],
            ['  AUC of the area, false vs true lesions',
             '-' if area['auc'] is None else f'{area["auc"]:.3f}'],
            ['lesion or not, answered right %: classifier / mask',
             f'{pct(summary["lesion_question"]["classifier_correct_pct"])}'
             f' / {pct(summary["lesion_question"]["mask_correct_pct"])}'],
            ['image accuracy (pred_label) %', pct(summary['accuracy_pct'])],
        ]))
    print(f'({record["wall_time_s"]:.0f} s)')
    if args.out:
        write_json(args.out, record)
        print(f'wrote {args.out}')
    return record


if __name__ == '__main__':
    main()
