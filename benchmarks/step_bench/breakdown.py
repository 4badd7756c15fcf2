"""Where a Hermes step's time goes: per-method timings of the segmentor
(``--breakdown``) and a ``torch.profiler`` trace (``--profile``).
"""
import functools
import os
import os.path as osp
import time
from contextlib import contextmanager
from typing import Dict, List

from _common import median

from .variants import Variant, synchronize


# (attribute path of the object, method) -> label
HERMES_METHODS = (('', 'teacher_predictions'), ('', 'mix_strong_views'),
                  ('pseudo_labeler', 'forward'), ('', 'student_forward'),
                  ('', 'unsupervised_losses'), ('img_contrast', 'loss'),
                  ('pix_contrast', 'loss'), ('consistency', 'loss'),
                  ('pseudo_labeler', 'diagnostics'))


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

    for path, name in HERMES_METHODS:
        obj = getattr(model, path) if path else model
        if obj is not None:
            wrap(obj, name, f'{path}.{name}' if path else name)
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
            clock(acc, 'pseudo_labeler.update (thresholds)',
                  lambda: model.pseudo_labeler.update(var.semi_iter))
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
