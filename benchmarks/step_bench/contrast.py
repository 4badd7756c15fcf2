"""``PixelContrastLoss`` time and peak memory vs. feature-map size, with the
config's sample counts (issue 4: memory must not grow with the image size
beyond the features themselves).
"""
import copy
import gc
import os.path as osp
import time
from typing import List

from _common import REPO_ROOT, median, summary

from .memory import (current_rss, peak_rss, reset_peak_rss,
                     run_worker_subprocess)
from .models import MIB, MODEL_CONFIGS
from .variants import synchronize


def contrast_inputs(n_img: int, side: int, dim: int, num_classes: int,
                    device, seed: int):
    """Pixel embeddings (N, D) and targets like HermesSegmentor builds:
    the first half of the images labelled (every pixel an anchor), the rest
    unlabelled with 60% reliable, 20% ambiguous, 20% unreliable pixels."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    n_lab = max(n_img // 2, 1)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side),
                            indexing='ij')
    labels = []
    for _ in range(n_img):
        cy, cx = (torch.rand(2, generator=gen) * 0.5 + 0.25) * side
        r = (torch.rand(1, generator=gen) * 0.2 + 0.15) * side
        labels.append(((yy - cy)**2 + (xx - cx)**2 <= r**2).long())
    labels = torch.stack(labels).flatten()
    n = labels.numel()
    per_img = side * side
    zone = torch.rand(n, generator=gen)
    unlab = torch.arange(n) >= n_lab * per_img
    anchors = ~unlab | (zone < 0.6)
    ambiguous = unlab & (zone >= 0.6) & (zone < 0.8)
    negatives = torch.zeros(n, num_classes, dtype=torch.bool)
    other = (labels + 1) % num_classes  # confidently not the other class
    negatives[ambiguous, other[ambiguous]] = True
    feats = torch.randn(n, dim, generator=gen)
    return (feats.to(device), labels.to(device), anchors.to(device),
            negatives.to(device))


def contrast_one_size(args, side: int, device) -> dict:
    """Time and peak memory of the pixel contrastive term at one size.

    Measures what ``PixelContrastHead.loss`` runs: sample
    pixels from labels/masks, gather their feature vectors from the
    (B, C, h, w) map, project them (``PixelProjectionHead.forward_pixels``),
    InfoNCE against prototypes, backward. The feature map and its gradient
    exist in the training step anyway; ``extra_mib`` is the peak beyond the
    map's gradient, which should not grow with the map at fixed sample
    counts.
    """
    import torch
    from mmengine.config import Config

    from hermes_mm.models.heads.pixel_contrast_head import gather_pixels
    from hermes_mm.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, MODEL_CONFIGS[args.model]['hermes']))
    loss_mod = MODELS.build(
        copy.deepcopy(cfg.model.pix_contrast.loss.to_dict())).to(device)
    projector = MODELS.build(
        copy.deepcopy(cfg.model.pix_contrast.projector.to_dict())).to(device)
    channels = projector.in_channels
    n_img = args.contrast_batch or (args.labeled + args.unlabeled)
    _, labels, anchors, negatives = contrast_inputs(
        n_img, side, loss_mod.feat_dim, loss_mod.num_classes, device,
        args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    feat_map = torch.randn(n_img, channels, side, side,
                           generator=gen).to(device).requires_grad_(True)

    def step():
        sample = loss_mod.sample(labels, anchors, negatives)
        emb = projector.forward_pixels(gather_pixels(feat_map, sample.index))
        loss = loss_mod.forward_sampled(emb, sample)
        loss_mod.update_prototypes(emb.detach(), sample.labels,
                                   sample.anchor_mask)
        loss.backward()
        return loss, sample.index.numel()

    step()  # steady state: prototypes set, as after the first step
    cuda = device.type == 'cuda'
    feat_mib = feat_map.numel() * feat_map.element_size() / MIB
    target_mib = sum(t.numel() * t.element_size()
                     for t in (labels, anchors, negatives)) / MIB
    times, peaks = [], []
    was_reset, rss0 = False, 0
    for it in range(1 + args.contrast_iters):
        feat_map.grad = None
        projector.zero_grad(set_to_none=True)
        if it == 1 and not cuda:
            gc.collect()
            was_reset = reset_peak_rss()
            rss0 = current_rss()
        if cuda:
            synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        loss, sampled = step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if it >= 1:
            times.append(elapsed)
            if cuda:
                peaks.append(
                    (torch.cuda.max_memory_allocated(device) - base) / MIB)
    if cuda:
        peak = max(peaks)
        method = 'cuda max_memory_allocated minus allocated before'
    else:
        peak = (peak_rss() - rss0) / MIB
        method = ('fresh process; RSS high-water mark (VmHWM, reset after '
                  'one warm-up iteration) minus RSS with the inputs '
                  'allocated; includes the feature map gradient; glibc '
                  'mmap threshold pinned' + ('' if was_reset else
                                             '; WARNING: reset failed'))
    return dict(
        side=side, images=n_img, pixels=int(labels.numel()),
        channels=channels, feat_dim=loss_mod.feat_dim,
        num_anchors_per_class=loss_mod.num_anchors_per_class,
        num_negatives=loss_mod.num_negatives, sampled_pixels=sampled,
        feats_mib=feat_mib, targets_mib=target_mib,
        peak_fwd_bwd_mib=peak, extra_mib=peak - feat_mib,
        peak_over_feats=peak / feat_mib if feat_mib else None,
        time_s=summary(times),
        loss=float(loss.detach()), memory_method=method)


def contrast_table(args, device) -> List[dict]:
    rows = []
    for side in args.contrast_sizes:
        if device.type == 'cuda':
            rows.append(contrast_one_size(args, side, device))
        else:
            rows.append(run_worker_subprocess(
                args, ['--worker', 'contrast', '--worker-size', str(side)]))
        r = rows[-1]
        print(f'  contrast {side}x{side}: {r["pixels"]} px, '
              f'{median(r["time_s"]["values"]):.4f}s, '
              f'peak {r["peak_fwd_bwd_mib"]:.1f} MiB '
              f'(feature map {r["feats_mib"]:.1f} MiB, extra '
              f'{r["extra_mib"]:.1f} MiB)', flush=True)
    return rows
