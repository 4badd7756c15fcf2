"""Training-step speed and memory of Hermes vs. its baselines and its floor.

Measures, on one backbone / decode head / input size and the same number of
*student* images (``B_l + B_u``):

(a) ``encoder_decoder``: MMSeg's ``EncoderDecoder``, supervised, same
    backbone and decode head, no classification branch,
    ``SegDataPreProcessor``;
    its batch holds ``B_l + B_u`` labelled images;
(b) ``multitask``: our supervised ``MultiTaskSegmentor`` (ITAS neck + cls
    head), ``B_l + B_u`` labelled images;
(c) ``hermes``: the full ``HermesSegmentor`` step (``B_l`` labelled images,
    ``B_u`` weak + ``B_u`` strong views), with every term at full weight
    (iteration after the ramp-ups), plus what
    ``DualThresholdPseudoLabelHook`` does after the step (EMA teacher update,
    threshold update);
(d) ``floor``: the passes Hermes cannot avoid, timed alone: one student
    forward+backward over the ``B_l + B_u`` labelled + strong images, one
    teacher forward (``no_grad``) over the ``B_u`` weak views, one optimizer
    step (a trivial loss on the outputs, so the backward covers the same
    graph).

Every variant runs MMEngine's own step (``optim_wrapper.optim_context`` ->
``data_preprocessor(batch, True)`` -> forward -> ``parse_losses`` ->
``update_params``: AdamW + grad clipping as in the configs), on synthetic
random batches (tensors + ``SegDataSample``; no data loader, so data loading
is *not* timed; pre-processing is). The variants are interleaved round-robin
within one process, so they see the same machine state; medians over the
timed iterations are reported.

Also measured: peak memory per variant (CUDA: ``max_memory_allocated`` above
what was allocated before the step; CPU: ``ru_maxrss`` above the resident
size after building, in a fresh subprocess per variant, with glibc's mmap
threshold pinned so freed tensors leave the RSS), inference images/s of the
Hermes teacher vs. ``EncoderDecoder`` (``test_step`` = pre-process +
``predict``, eval, ``no_grad``), and time + peak memory of
``PixelContrastLoss`` forward+backward at several feature-map sizes with the
sample counts of the config (issue 4: its memory must not grow with image
size beyond the features themselves).

Examples::

    python benchmarks/train_step.py                       # CPU, small model
    python benchmarks/train_step.py --model r50 --size 512 --device cuda \
        --amp bf16 --iters 30 --warmup 5
    python benchmarks/train_step.py --breakdown --profile  # where time goes
"""
import argparse
import copy
import functools
import gc
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (REPO_ROOT, environment, median, summary,  # noqa: E402
                     table, write_json)

VARIANTS = ('encoder_decoder', 'multitask', 'hermes', 'floor')
MODEL_CONFIGS = dict(
    small=dict(
        multitask='configs/_base_/models/multitask_r18_small_itas.py',
        hermes='configs/_base_/models/hermes_r18_small_itas.py'),
    r50=dict(
        multitask='configs/_base_/models/multitask_r50_upernet_itas.py',
        hermes='configs/_base_/models/hermes_r50_upernet_itas.py'),
)
SCHEDULE_CONFIG = 'configs/_base_/schedules/schedule_20k.py'
#: glibc: serve every allocation >= 128 KiB with mmap and give it back on
#: free, so the RSS high-water mark follows live tensor memory (CPU only).
MALLOC_ENV = dict(MALLOC_MMAP_THRESHOLD_='131072',
                  MALLOC_TRIM_THRESHOLD_='131072')
MIB = 2.0**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model', choices=sorted(MODEL_CONFIGS), default='small',
                   help='small: half-width ResNetV1c-18 + UPerHead(64) '
                   '(hermes_r18_small_itas.py); r50: ResNetV1c-50 + '
                   'UPerHead(256) (hermes_r50_upernet_itas.py)')
    p.add_argument('--size', type=int, default=128, help='input H = W')
    p.add_argument('--labeled', type=int, default=4, help='B_l')
    p.add_argument('--unlabeled', type=int, default=4, help='B_u')
    p.add_argument('--iters', type=int, default=10,
                   help='timed iterations per variant')
    p.add_argument('--warmup', type=int, default=3,
                   help='untimed iterations per variant first')
    p.add_argument('--device', default='cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='none',
                   help='mixed precision via MMEngine AmpOptimWrapper '
                   '(bf16 also on CPU)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (default: torch default)')
    p.add_argument('--variants', nargs='+', choices=VARIANTS,
                   default=list(VARIANTS))
    p.add_argument('--semi-iter', type=int, default=None,
                   help='iteration Hermes is told (ramp weights); default: '
                   'the end of the longest ramp-up, every term at full '
                   'weight')
    p.add_argument('--teacher', choices=['mixed', 'random'],
                   default='mixed',
                   help="mixed: scale the teacher's last seg/cls layers so "
                   'its pseudo-labels fall in all three zones (as after '
                   'warm-up; zone ratios are reported); random: the '
                   'freshly initialised teacher (every pixel and image '
                   "'unreliable', so the pseudo-label branches do little)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cudnn-benchmark', action='store_true',
                   help='torch.backends.cudnn.benchmark = True (the configs '
                   'keep it False)')
    p.add_argument('--no-memory', action='store_true',
                   help='skip the per-variant peak-memory measurement')
    p.add_argument('--mem-iters', type=int, default=3,
                   help='steps per variant in the CPU memory subprocess')
    p.add_argument('--no-infer', action='store_true',
                   help='skip the inference images/s measurement')
    p.add_argument('--infer-batches', type=int, nargs='+', default=[1, 8])
    p.add_argument('--infer-iters', type=int, default=10)
    p.add_argument('--no-contrast', action='store_true',
                   help='skip the PixelContrastLoss memory-vs-size table')
    p.add_argument('--contrast-sizes', type=int, nargs='+',
                   default=[32, 64, 128, 256],
                   help='feature-map side lengths')
    p.add_argument('--contrast-batch', type=int, default=None,
                   help='images per contrastive batch (default B_l + B_u)')
    p.add_argument('--contrast-iters', type=int, default=5)
    p.add_argument('--breakdown', action='store_true',
                   help='also time the named steps of one Hermes step '
                   '(inclusive wall time per method)')
    p.add_argument('--profile', action='store_true',
                   help='also run torch.profiler over 2 Hermes steps and '
                   'save the top operators next to the JSON')
    p.add_argument('--out', default=None,
                   help='result JSON (default benchmarks/runs/train_step/'
                   '<model>_<size>_<device>[_amp].json)')
    # Internal: fresh-subprocess workers for CPU peak memory.
    p.add_argument('--worker', choices=['memory', 'contrast'],
                   help=argparse.SUPPRESS)
    p.add_argument('--worker-variant', help=argparse.SUPPRESS)
    p.add_argument('--worker-size', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    # Re-used for the memory subprocesses (same settings).
    args.cli = list(sys.argv[1:] if argv is None else argv)
    if args.labeled < 1 or args.unlabeled < 1:
        p.error('--labeled and --unlabeled must be >= 1')
    if args.out is None:
        amp = '' if args.amp == 'none' else f'_{args.amp}'
        dev = args.device.replace(':', '')
        args.out = osp.join(REPO_ROOT, 'benchmarks', 'runs', 'train_step',
                            f'{args.model}_{args.size}_{dev}{amp}.json')
    return args


# ----------------------------------------------------------------------
# models
# ----------------------------------------------------------------------
def load_model_cfgs(args) -> Dict[str, dict]:
    """Model configs of every variant, from the shipped config files."""
    from mmengine.config import Config
    paths = MODEL_CONFIGS[args.model]
    size = (args.size, args.size)
    mt = Config.fromfile(osp.join(REPO_ROOT, paths['multitask'])).model
    mt = copy.deepcopy(mt.to_dict())
    mt['data_preprocessor']['size'] = size
    herm = Config.fromfile(osp.join(REPO_ROOT, paths['hermes'])).model
    herm = copy.deepcopy(herm.to_dict())
    herm['data_preprocessor']['data_preprocessor']['size'] = size
    ed = dict(
        type='EncoderDecoder',
        data_preprocessor=copy.deepcopy(mt['data_preprocessor']),
        backbone=copy.deepcopy(mt['backbone']),
        decode_head=copy.deepcopy(mt['decode_head']),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    for key in ('neck', 'auxiliary_head'):
        if mt.get(key) is not None:
            ed[key] = copy.deepcopy(mt[key])
    return dict(encoder_decoder=ed, multitask=mt, hermes=herm,
                floor=copy.deepcopy(herm))


def semi_iteration(hermes_cfg: dict, override: Optional[int]) -> int:
    """Iteration at which every ramped term has reached its full weight."""
    if override is not None:
        return override
    ends = [0]
    for key in ('unsup_weight', 'contrast_weight', 'consistency_weight'):
        ramp = hermes_cfg.get(key) or {}
        ends.append(int(ramp.get('start', 0)) + int(ramp.get('length', 0)))
    return max(ends)


def build_model(cfg: dict, device):
    from mmengine.config import ConfigDict
    from mmengine.model import revert_sync_batchnorm

    from hermes_mm.registry import MODELS

    # ConfigDict as from a config file (MMSeg reads test_cfg.mode).
    model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    model.init_weights()
    # What the Runner does when not distributed (SyncBN -> BN).
    model = revert_sync_batchnorm(model)
    return model.to(device)


def build_optim_wrapper(model, args):
    """The configs' optimizer (AdamW + clipping), optionally AMP.

    CUDA: MMEngine's ``AmpOptimWrapper`` (what ``tools/train.py --amp``
    uses) with the requested dtype. CPU (``AmpOptimWrapper`` refuses it):
    the plain wrapper with ``torch.autocast('cpu', bfloat16)`` around the
    forward pass.
    """
    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.optim import build_optim_wrapper as build
    cfg = copy.deepcopy(
        Config.fromfile(osp.join(REPO_ROOT, SCHEDULE_CONFIG)).optim_wrapper)
    on_cuda = str(args.device).startswith('cuda')
    if args.amp != 'none' and on_cuda:
        cfg['type'] = 'AmpOptimWrapper'
        cfg['dtype'] = dict(bf16='bfloat16', fp16='float16')[args.amp]
        cfg['loss_scale'] = 'dynamic'
    wrapper = build(model, cfg)
    if args.amp != 'none' and not on_cuda:
        if args.amp != 'bf16':
            raise SystemExit('--amp on CPU: only bf16')

        class CPUAutocastOptimWrapper(OptimWrapper):

            @contextmanager
            def optim_context(self, model):
                with super().optim_context(model), torch.autocast(
                        'cpu', dtype=torch.bfloat16):
                    yield

        wrapper = CPUAutocastOptimWrapper(
            optimizer=wrapper.optimizer, clip_grad=cfg.get('clip_grad'))
    return wrapper


def state_bytes(model, optim_wrapper=None) -> Dict[str, float]:
    """Parameter, buffer and optimizer-state MiB (exact tensor sizes)."""
    import torch
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters()
                    if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    optim = 0
    if optim_wrapper is not None:
        for state in optim_wrapper.optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    optim += value.numel() * value.element_size()
    return dict(params_mib=params / MIB, trainable_params_mib=trainable / MIB,
                buffers_mib=buffers / MIB, optimizer_state_mib=optim / MIB)


# ----------------------------------------------------------------------
# synthetic batches
# ----------------------------------------------------------------------
class BatchFactory:
    """Fixed random images / masks / labels; fresh sample objects per call.

    Images are uint8 (3, S, S) as the data loader gives them; labelled
    masks hold one random ellipse "lesion" (class 2, BUSI's 'normal', gets
    an empty mask). Unlabelled views carry the hidden mask/label the
    synthetic set provides (pseudo-label precision diagnostics run, as in
    real training). Strong views are the weak images plus noise.
    """

    def __init__(self, args, pool: int = 2):
        import torch
        self.size = args.size
        self.b_l, self.b_u = args.labeled, args.unlabeled
        gen = torch.Generator().manual_seed(args.seed)
        self.pool = []
        for _ in range(pool):
            n = self.b_l + self.b_u
            imgs = torch.randint(0, 256, (n, 3, self.size, self.size),
                                 dtype=torch.uint8, generator=gen)
            noise = torch.randint(-40, 41, (self.b_u, 3, self.size,
                                            self.size), generator=gen)
            strong = (imgs[self.b_l:].int() + noise).clamp(0, 255).to(
                torch.uint8)
            labels = torch.randint(0, 3, (n, ), generator=gen)
            masks = torch.stack([
                self._ellipse(gen) if int(c) != 2 else
                torch.zeros(self.size, self.size, dtype=torch.long)
                for c in labels
            ])
            self.pool.append(dict(imgs=imgs, strong=strong, labels=labels,
                                  masks=masks))
        self.calls = 0

    def _ellipse(self, gen):
        import torch
        s = self.size
        cy, cx = (torch.rand(2, generator=gen) * 0.5 + 0.25) * s
        ry, rx = (torch.rand(2, generator=gen) * 0.2 + 0.1) * s
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s),
                                indexing='ij')
        inside = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        return inside.long()

    def _meta(self, i):
        s = (self.size, self.size)
        return dict(img_path=f'synthetic_{i}.png', img_rel=f'{i}.png',
                    ori_shape=s, img_shape=s, pad_shape=s,
                    scale_factor=(1.0, 1.0), flip=False,
                    flip_direction=None, reduce_zero_label=False)

    def _labelled(self, p, i):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=self._meta(i))
        sample.gt_sem_seg = PixelData(data=p['masks'][i][None].clone())
        sample.set_data(dict(gt_label=p['labels'][i].view(1).clone()))
        return sample

    def _unlabelled(self, p, i):
        import torch
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=self._meta(i))
        sample.set_data(dict(
            gt_label=torch.tensor([-1]),
            hidden_sem_seg=PixelData(data=p['masks'][i][None].clone()),
            hidden_label=p['labels'][i].view(1).clone()))
        return sample

    def _next(self):
        p = self.pool[self.calls % len(self.pool)]
        self.calls += 1
        return p

    def plain(self) -> dict:
        """B_l + B_u labelled images (the labelled + strong images)."""
        p = self._next()
        imgs = list(p['imgs'][:self.b_l]) + list(p['strong'])
        return dict(inputs=imgs,
                    data_samples=[self._labelled(p, i)
                                  for i in range(self.b_l + self.b_u)])

    def multi_branch(self) -> dict:
        """What MultiBranch + pseudo_collate give: per-branch lists with
        None where a sample does not feed the branch."""
        p = self._next()
        b_l, b_u = self.b_l, self.b_u
        none_l, none_u = [None] * b_l, [None] * b_u
        return dict(
            inputs=dict(
                sup=list(p['imgs'][:b_l]) + none_u,
                unsup_weak=none_l + list(p['imgs'][b_l:]),
                unsup_strong=none_l + list(p['strong'])),
            data_samples=dict(
                sup=[self._labelled(p, i) for i in range(b_l)] + none_u,
                unsup_weak=none_l + [self._unlabelled(p, b_l + i)
                                     for i in range(b_u)],
                unsup_strong=none_l + [self._unlabelled(p, b_l + i)
                                       for i in range(b_u)]))

    def test(self, batch: int) -> dict:
        from mmseg.structures import SegDataSample
        p = self._next()
        n = p['imgs'].shape[0]
        idx = [i % n for i in range(batch)]
        return dict(inputs=[p['imgs'][i] for i in idx],
                    data_samples=[SegDataSample(metainfo=self._meta(i))
                                  for i in idx])


# ----------------------------------------------------------------------
# one step per variant
# ----------------------------------------------------------------------
class Variant:
    """A model, its optimizer wrapper and its step function."""

    def __init__(self, name: str, cfg: dict, args, device, factory):
        self.name = name
        self.model = build_model(cfg, device)
        self.model.train()
        self.optim = build_optim_wrapper(self.model, args)
        self.factory = factory
        self.semi_iter = semi_iteration(cfg, args.semi_iter) \
            if name in ('hermes', 'floor') else None
        self.last_log: Dict[str, float] = {}

    def batch(self) -> dict:
        if self.name in ('hermes', 'floor'):
            return self.factory.multi_branch()
        return self.factory.plain()

    def step(self, batch: dict) -> None:
        model, optim = self.model, self.optim
        if self.name in ('encoder_decoder', 'multitask'):
            log = model.train_step(batch, optim)
        elif self.name == 'hermes':
            # DualThresholdPseudoLabelHook: before / after the step.
            model.set_iteration(self.semi_iter)
            log = model.train_step(batch, optim)
            model.update_teacher()
            model.update_thresholds(self.semi_iter)
        else:
            log = floor_step(model, batch, optim)
        self.last_log = {k: float(v.detach()) if hasattr(v, 'detach')
                         else float(v) for k, v in log.items()}


#: Target share of reliable pixels / images for ``--teacher mixed``.
TARGET_RELIABLE = dict(seg=0.7, cls=0.6)


def _last_layer(module, names):
    for name in names:
        layer = getattr(module, name, None)
        if layer is not None and hasattr(layer, 'weight'):
            return layer
    return None


def calibrate_teacher(var: 'Variant', args) -> Optional[dict]:
    """Make a fresh teacher produce pseudo-labels in every zone.

    A randomly initialised teacher is unsure everywhere (all pixels and
    images 'unreliable'), which would skip most of the pseudo-label and
    contrastive work a real step does after warm-up. The teacher's last
    segmentation conv and classifier are scaled (sharper softmax) by the
    power of two whose reliable share is closest to ``TARGET_RELIABLE``
    under the config's own threshold policies. Only the teacher changes.
    """
    import torch
    if args.teacher != 'mixed' or var.name not in ('hermes', 'floor'):
        return None
    model = var.model
    teacher = model.teacher.module
    layers = dict(
        seg=_last_layer(teacher.decode_head, ('conv_seg', )),
        cls=_last_layer(teacher.cls_head, ('fc', 'layers')))
    originals = {k: (l.weight.detach().clone(),
                     None if l.bias is None else l.bias.detach().clone())
                 for k, l in layers.items() if l is not None}
    batch = var.factory.multi_branch()
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
    names = model.branches
    weak = data['inputs'][names['weak']]
    strong = data['inputs'][names['strong']]
    strong_ds = data['data_samples'][names['strong']]

    def reliable_share(task, scale):
        layer = layers[task]
        w, b = originals[task]
        with torch.no_grad():
            layer.weight.copy_(w * scale)
            if b is not None:
                layer.bias.copy_(b * scale)
            teacher_out = model.teacher_pseudo_labels(weak, strong_ds)
            _, teacher_out = model.mix_strong_views(strong, teacher_out)
        zones = teacher_out[f'{task}_zones']
        return float(zones.reliable.float().mean())

    chosen = {}
    for task in ('seg', 'cls'):
        if task not in originals:
            continue
        best = None
        for power in range(0, 11):
            share = reliable_share(task, 2.0**power)
            # Ties (few images) go to the more confident teacher.
            gap = (abs(share - TARGET_RELIABLE[task]), -share)
            if best is None or gap < best[0]:
                best = (gap, 2.0**power, share)
        reliable_share(task, best[1])
        chosen[task] = dict(scale=best[1], reliable_share=best[2])
    model.threshold_stats = {}
    return chosen


def floor_step(model, batch: dict, optim) -> dict:
    """Student fwd+bwd over labelled + strong, teacher fwd over weak,
    optimizer step: the passes a teacher/student step cannot avoid."""
    import torch
    names = model.branches
    with optim.optim_context(model):
        data = model.data_preprocessor(batch, True)
        inputs = data['inputs']
        student_x = torch.cat([inputs[names['sup']], inputs[names['strong']]])
        with torch.no_grad():
            model.teacher.module.forward_train(inputs[names['weak']])
        out = model.student.forward_train(student_x)
        loss = out.seg_logits.float().mean() + out.cls_logits.float().mean()
    optim.update_params(loss)
    return dict(loss=loss.detach())


def synchronize(device) -> None:
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize(device)


def timed_steps(variants: Dict[str, Variant], args, device,
                memory: bool) -> Dict[str, dict]:
    """Round-robin: each iteration runs every variant once, in a rotating
    order (so no variant always follows the same one)."""
    import torch
    cuda = str(device).startswith('cuda')
    times = {n: [] for n in variants}
    peaks = {n: [] for n in variants}
    names = list(variants)
    for it in range(args.warmup + args.iters):
        order = names[it % len(names):] + names[:it % len(names)]
        for name in order:
            var = variants[name]
            batch = var.batch()
            if cuda and memory:
                synchronize(device)
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            start = time.perf_counter()
            var.step(batch)
            synchronize(device)
            elapsed = time.perf_counter() - start
            if it >= args.warmup:
                times[name].append(elapsed)
                if cuda and memory:
                    peaks[name].append(
                        (torch.cuda.max_memory_allocated(device) - base) /
                        MIB)
        print(f'  iter {it + 1}/{args.warmup + args.iters}: ' + ', '.join(
            f'{n} {times[n][-1] if it >= args.warmup else 0:.3f}s'
            for n in names) + (' (warm-up)' if it < args.warmup else ''),
              flush=True)
    out = {}
    for name in names:
        out[name] = dict(time_s=summary(times[name]))
        if cuda and memory:
            out[name]['peak_step_mib'] = max(peaks[name])
            out[name]['memory_method'] = (
                'torch.cuda.max_memory_allocated during the step minus '
                'memory_allocated before it (activations, gradients, '
                'temporaries; weights and optimizer state excluded)')
    return out


# ----------------------------------------------------------------------
# CPU peak memory: a fresh subprocess per variant
# ----------------------------------------------------------------------
def current_rss() -> int:
    """Resident set size of this process, bytes."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE')


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0: clear_refs 5)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """RSS high-water mark since the last reset (VmHWM), else ru_maxrss."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_worker(args) -> dict:
    """Build one variant, then run steps; peak RSS above the built state."""
    import torch
    device = torch.device(args.device)
    cfgs = load_model_cfgs(args)
    factory = BatchFactory(args)
    var = Variant(args.worker_variant, cfgs[args.worker_variant], args,
                  device, factory)
    calibrate_teacher(var, args)
    batches = [var.batch() for _ in range(args.mem_iters + 1)]
    var.step(batches.pop())  # optimizer state is allocated here
    gc.collect()
    was_reset = reset_peak_rss()
    rss0 = current_rss()
    times = []
    for batch in batches:
        start = time.perf_counter()
        var.step(batch)
        times.append(time.perf_counter() - start)
    peak = peak_rss()
    return dict(
        variant=args.worker_variant,
        rss_after_build_mib=rss0 / MIB,
        peak_rss_mib=peak / MIB,
        peak_step_mib=(peak - rss0) / MIB,
        isolated_time_s=summary(times),
        state=state_bytes(var.model, var.optim),
        peak_reset=was_reset,
        memory_method=(
            'fresh process per variant, after one warm-up step (optimizer '
            'state allocated): RSS high-water mark (VmHWM, reset via '
            '/proc/self/clear_refs) minus RSS before the steps: '
            'activations, gradients, temporaries; glibc mmap threshold '
            'pinned (MALLOC_MMAP_THRESHOLD_=131072) so freed tensors leave '
            'the RSS' + ('' if was_reset else
                         '; WARNING: could not reset the high-water mark, '
                         'ru_maxrss used (includes start-up peaks)')))


def run_worker_subprocess(args, extra: List[str]) -> dict:
    argv = [sys.executable, osp.abspath(__file__)] + strip_worker_args(
        args.cli) + extra + ['--out', os.devnull]
    env = dict(os.environ, **MALLOC_ENV)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'worker {extra} failed:\n{proc.stderr[-3000:]}')
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('WORKER_RESULT '):
            return json.loads(line[len('WORKER_RESULT '):])
    raise RuntimeError(f'worker {extra} printed no result:\n'
                       f'{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}')


def strip_worker_args(argv: List[str]) -> List[str]:
    """The parent's argv without flags that only the parent acts on."""
    drop_with_value = {'--out', '--worker', '--worker-variant',
                       '--worker-size'}
    drop_flags = {'--breakdown', '--profile'}
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        key = item.split('=', 1)[0]
        if key in drop_with_value:
            skip = '=' not in item
            continue
        if key in drop_flags:
            continue
        out.append(item)
    return out


# ----------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------
def inference(variants: Dict[str, Variant], args, device) -> dict:
    """images/s of ``test_step`` (pre-process + predict), eval, no_grad;
    Hermes predicts with its teacher (``predict_on='teacher'``)."""
    import torch
    models = {n: variants[n].model for n in ('encoder_decoder', 'hermes')
              if n in variants}
    if 'hermes' in models:
        assert models['hermes'].predict_on == 'teacher'
    amp = amp_context(args, device)
    results = {}
    for batch_size in args.infer_batches:
        times = {n: [] for n in models}
        warm = 2
        for it in range(warm + args.infer_iters):
            for name, model in models.items():
                model.eval()
                batch = variants[name].factory.test(batch_size)
                synchronize(device)
                start = time.perf_counter()
                with torch.no_grad(), amp():
                    model.test_step(batch)
                synchronize(device)
                if it >= warm:
                    times[name].append(time.perf_counter() - start)
        for name in models:
            t = median(times[name])
            results.setdefault(name, {})[f'batch_{batch_size}'] = dict(
                time_s=summary(times[name]), images_per_s=batch_size / t)
    for name, model in models.items():
        model.train()
    return results


def amp_context(args, device) -> Callable:
    import torch
    if args.amp == 'none':
        return nullcontext
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[args.amp]
    return functools.partial(torch.autocast, device_type=device.type,
                             dtype=dtype)


# ----------------------------------------------------------------------
# PixelContrastLoss vs. feature-map size
# ----------------------------------------------------------------------
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

    Measures what ``HermesSegmentor.pixel_contrastive_loss`` runs: sample
    pixels from labels/masks, gather their feature vectors from the
    (B, C, h, w) map, project them (``PixelProjectionHead.forward_pixels``),
    InfoNCE against prototypes, backward. The feature map and its gradient
    exist in the training step anyway; ``extra_mib`` is the peak beyond the
    map's gradient, which should not grow with the map at fixed sample
    counts.
    """
    import torch
    from mmengine.config import Config

    from hermes_mm.models.segmentors.hermes_segmentor import gather_pixels
    from hermes_mm.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, MODEL_CONFIGS[args.model]['hermes']))
    loss_mod = MODELS.build(
        copy.deepcopy(cfg.model.pix_contrast_loss.to_dict())).to(device)
    projector = MODELS.build(
        copy.deepcopy(cfg.model.pix_projector.to_dict())).to(device)
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


# ----------------------------------------------------------------------
# breakdown / profile of the Hermes step
# ----------------------------------------------------------------------
HERMES_METHODS = ('teacher_pseudo_labels', 'mix_strong_views',
                  'select_pseudo_labels', 'unsupervised_losses',
                  'contrastive_losses', 'image_contrastive_loss',
                  'pixel_contrastive_loss', 'inter_task_losses',
                  'pseudo_label_diagnostics')
STUDENT_METHODS = ('forward_train', 'supervised_losses')


@contextmanager
def timed_methods(var: Variant, device, acc: Dict[str, float]):
    """Wrap named methods of the Hermes model (if they exist) with wall
    clocks; inclusive times add up in ``acc``."""
    model = var.model
    wrapped = []

    def wrap(obj, name, label):
        orig = getattr(obj, name, None)
        if orig is None:
            return

        @functools.wraps(orig)
        def timed(*a, **kw):
            synchronize(device)
            start = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                synchronize(device)
                acc[label] = acc.get(label, 0.0) + time.perf_counter() - start

        setattr(obj, name, timed)
        wrapped.append((obj, name))

    for name in HERMES_METHODS:
        wrap(model, name, name)
    for name in STUDENT_METHODS:
        wrap(model.student, name, f'student.{name}')
    wrap(model.data_preprocessor, 'forward', 'data_preprocessor')
    try:
        yield
    finally:
        for obj, name in wrapped:
            delattr(obj, name)


def breakdown(var: Variant, args, device, iters: int) -> dict:
    """Median per-step wall time of the named parts of the Hermes step."""
    model, optim = var.model, var.optim
    runs: List[Dict[str, float]] = []

    def clock(acc, label, fn):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        acc[label] = acc.get(label, 0.0) + time.perf_counter() - start
        return out

    for it in range(1 + iters):
        batch = var.batch()
        acc: Dict[str, float] = {}
        start = time.perf_counter()
        with timed_methods(var, device, acc):
            model.set_iteration(var.semi_iter)
            with optim.optim_context(model):
                data = model.data_preprocessor(batch, True)
                losses = clock(acc, 'loss() total',
                               lambda: model._run_forward(data, mode='loss'))
            loss, _ = clock(acc, 'parse_losses',
                            lambda: model.parse_losses(losses))
            clock(acc, 'backward', lambda: optim.backward(loss))
            clock(acc, 'optimizer step + zero_grad',
                  lambda: (optim.step(), optim.zero_grad()))
            clock(acc, 'update_teacher (EMA)', model.update_teacher)
            clock(acc, 'update_thresholds',
                  lambda: model.update_thresholds(var.semi_iter))
        synchronize(device)
        acc['step total'] = time.perf_counter() - start
        if it >= 1:
            runs.append(acc)
    labels = list(runs[0])
    return {k: median([r.get(k, 0.0) for r in runs]) for k in labels}


def profile_hermes(var: Variant, args, device, path: str) -> str:
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        acts.append(ProfilerActivity.CUDA)
    var.step(var.batch())
    with profile(activities=acts, record_shapes=True) as prof:
        for _ in range(2):
            var.step(var.batch())
    sorts = (['device_time_total', 'cuda_time_total']
             if device.type == 'cuda' else ['cpu_time_total'])
    for sort in sorts:
        try:
            text = prof.key_averages().table(sort_by=sort, row_limit=45)
            text_self = prof.key_averages(group_by_input_shape=True).table(
                sort_by='self_' + sort, row_limit=30)
            break
        except (KeyError, AttributeError, ValueError):
            continue
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'# 2 Hermes steps, sorted by {sort}\n{text}\n\n'
                f'# by self time, grouped by input shape\n{text_self}\n')
    return path


# ----------------------------------------------------------------------
def setup(args):
    import torch
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import hermes_mm  # noqa: F401  (compat + registration)
    init_default_scope('mmseg')
    # init_weights() logs every parameter at INFO; keep the output readable.
    MMLogger.get_current_instance().setLevel('WARNING')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda but torch sees no GPU')
        torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    return device


def main(argv=None):
    args = parse_args(argv)
    device = setup(args)
    if args.worker == 'memory':
        print('WORKER_RESULT ' + json.dumps(memory_worker(args)))
        return
    if args.worker == 'contrast':
        print('WORKER_RESULT ' +
              json.dumps(contrast_one_size(args, args.worker_size, device)))
        return

    t_start = time.perf_counter()
    env = environment(args.device)
    print(f'Machine: {env["cpu"]} x{env["cpu_count"]}, torch '
          f'{env["torch"]} ({env["torch_threads"]} threads), '
          f'device {args.device}' + (f' ({env.get("gpu")})'
                                     if 'gpu' in env else '') +
          f', load avg {env["load_average"]}')
    cfgs = load_model_cfgs(args)
    factory = BatchFactory(args)
    variants = {n: Variant(n, cfgs[n], args, device, factory)
                for n in args.variants}
    calibration = {n: calibrate_teacher(v, args)
                   for n, v in variants.items()}
    print(f'Training steps: {args.model} model, {args.size}x{args.size}, '
          f'B_l={args.labeled}, B_u={args.unlabeled}, amp={args.amp}, '
          f'{args.warmup} warm-up + {args.iters} timed iterations '
          'round-robin', flush=True)
    steps = timed_steps(variants, args, device, memory=not args.no_memory)
    for name, var in variants.items():
        steps[name]['state'] = state_bytes(var.model, var.optim)
        steps[name]['student_images'] = args.labeled + args.unlabeled
        steps[name]['teacher_images'] = args.unlabeled if name in (
            'hermes', 'floor') else 0
        if calibration.get(name):
            steps[name]['teacher_calibration'] = calibration[name]
        if name == 'hermes':
            steps[name]['semi_iter'] = var.semi_iter
            steps[name]['last_log'] = {
                k: v for k, v in var.last_log.items()
                if k.startswith(('zone.', 'loss', 'con.', 'ict.', 'unsup.'))
            }

    if not args.no_memory and device.type == 'cpu':
        print('Peak memory: one fresh subprocess per variant', flush=True)
        for name in variants:
            res = run_worker_subprocess(
                args, ['--worker', 'memory', '--worker-variant', name])
            steps[name]['peak_step_mib'] = res['peak_step_mib']
            steps[name]['memory'] = res
            steps[name]['memory_method'] = res['memory_method']
            print(f'  {name}: +{res["peak_step_mib"]:.0f} MiB over '
                  f'{res["rss_after_build_mib"]:.0f} MiB', flush=True)

    result: Dict[str, Any] = dict(
        benchmark='train_step', environment=env, args=vars(args),
        configs=MODEL_CONFIGS[args.model], train=steps)
    med = {n: steps[n]['time_s']['median'] for n in steps}
    ratios = {}
    for num, den in (('hermes', 'floor'), ('hermes', 'encoder_decoder'),
                     ('multitask', 'encoder_decoder'),
                     ('floor', 'encoder_decoder')):
        if num in med and den in med:
            ratios[f'{num}/{den}'] = med[num] / med[den]
    result['ratios'] = ratios

    # Save the main numbers now: a later phase that fails or runs out of
    # time must not lose them.
    write_json(args.out, result)

    def phase(key, fn):
        try:
            result[key] = fn()
        except Exception as exc:  # noqa: BLE001 - report, keep the rest
            import traceback
            traceback.print_exc()
            result.setdefault('errors', {})[key] = repr(exc)

    if args.breakdown and 'hermes' in variants:
        print('Breakdown of the Hermes step', flush=True)
        phase('hermes_breakdown_s', lambda: breakdown(
            variants['hermes'], args, device, max(args.iters, 3)))
    if args.profile and 'hermes' in variants:
        path = osp.splitext(args.out)[0] + '_profile.txt'
        phase('profile_file', lambda: profile_hermes(
            variants['hermes'], args, device, path))
        print(f'Profile of 2 Hermes steps: {path}')
    if not args.no_infer:
        print('Inference', flush=True)
        phase('inference', lambda: inference(variants, args, device))
    if not args.no_contrast:
        print('PixelContrastLoss vs feature-map size', flush=True)
        # The training models are no longer needed: free their memory.
        variants.clear()
        gc.collect()
        if device.type == 'cuda':
            import torch
            torch.cuda.empty_cache()
        phase('pixel_contrast', lambda: contrast_table(args, device))
    result['wall_time_s'] = time.perf_counter() - t_start
    write_json(args.out, result)
    print(report(result))
    print(f'\nwrote {args.out} ({result["wall_time_s"]:.0f}s)')


def report(result: dict) -> str:
    args, steps, env = result['args'], result['train'], result['environment']
    ed = steps.get('encoder_decoder', {}).get('time_s', {}).get('median')
    rows = []
    for name, s in steps.items():
        t = s['time_s']['median']
        rows.append([
            name, t, s['time_s']['min'], s['student_images'] / t,
            s.get('peak_step_mib'), s['state']['params_mib'],
            t / ed if ed else None
        ])
    out = [
        f'\n## Training step: {args["model"]} model, '
        f'{args["size"]}x{args["size"]}, B_l={args["labeled"]} '
        f'B_u={args["unlabeled"]}, {args["device"]}, amp={args["amp"]}',
        f'{env["cpu"]}, torch {env["torch"]}, {env["torch_threads"]} '
        f'threads' + (f', {env["gpu"]}' if 'gpu' in env else '') +
        f'; median of {args["iters"]} after {args["warmup"]} warm-up',
        '',
        table(['variant', 'median s/iter', 'min s', 'student img/s',
               'peak step MiB', 'params MiB', 'x encoder_decoder'], rows),
        '',
        table(['ratio', 'value'],
              [[k, v] for k, v in result['ratios'].items()]),
    ]
    if 'hermes_breakdown_s' in result:
        bd = result['hermes_breakdown_s']
        total = bd.get('step total') or 1
        out += ['', '### Hermes step breakdown (inclusive, median s)', '',
                table(['part', 's', '% of step'],
                      [[k, v, 100 * v / total] for k, v in bd.items()])]
    if 'inference' in result:
        rows = []
        for name, per in result['inference'].items():
            for key, val in per.items():
                rows.append([name + (' (teacher)' if name == 'hermes'
                                     else ''), key.split('_')[1],
                             val['time_s']['median'], val['images_per_s']])
        out += ['', '### Inference (test_step, eval, no_grad)', '',
                table(['model', 'batch', 'median s', 'images/s'], rows)]
    if 'pixel_contrast' in result:
        rows = [[
            f'{r["side"]}x{r["side"]}', r['pixels'], r['sampled_pixels'],
            r['feats_mib'], r['peak_fwd_bwd_mib'], r['extra_mib'],
            r['time_s']['median']
        ] for r in result['pixel_contrast']]
        r0 = result['pixel_contrast'][0]
        out += ['', f'### Pixel contrastive term (sample, gather, project, '
                f'InfoNCE, backward) vs. feature-map size ({r0["images"]} '
                f'images, C={r0["channels"]}, D={r0["feat_dim"]}, '
                f'{r0["num_anchors_per_class"]} anchors/class, '
                f'{r0["num_negatives"]} negatives)', '',
                table(['map', 'pixels N', 'sampled', 'feature map MiB',
                       'peak MiB', 'peak - map MiB', 'fwd+bwd s'], rows)]
    return '\n'.join(out)


if __name__ == '__main__':
    main()
