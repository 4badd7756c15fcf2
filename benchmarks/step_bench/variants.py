"""The benchmarked variants (``encoder_decoder``, ``multitask``, ``hermes``,
``floor``): one model + optimizer each, MMEngine's own train step, the
interleaved timing loop and the inference timing.
"""
import functools
import time
from contextlib import nullcontext
from typing import Callable, Dict, Optional

from _common import median, summary

from .models import MIB, build_model, build_optim_wrapper, semi_iteration


VARIANTS = ('encoder_decoder', 'multitask', 'hermes', 'floor')


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
            # TeacherThresholdUpdateHook: before / after the step.
            model.set_iteration(self.semi_iter)
            log = model.train_step(batch, optim)
            model.update_teacher()
            model.pseudo_labeler.update(self.semi_iter)
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
            teacher_out = model.teacher_predictions(weak, strong_ds)
            _, teacher_out, mixed = model.mix_strong_views(strong,
                                                           teacher_out)
            pseudo = model.pseudo_labeler(mixed=mixed, **teacher_out)
        zones = getattr(pseudo, f'{task}_zones')
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
    # The statistics the calibration left in the pseudo-labeller are
    # replaced by the next training step's before any update.
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


def amp_context(args, device) -> Callable:
    import torch
    if args.amp == 'none':
        return nullcontext
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[args.amp]
    return functools.partial(torch.autocast, device_type=device.type,
                             dtype=dtype)


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
