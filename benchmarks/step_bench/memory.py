"""Peak memory of one variant's training step, measured in a fresh
subprocess of ``benchmarks/train_step.py`` (CPU: ``ru_maxrss`` with glibc's
mmap threshold pinned; CUDA: ``max_memory_allocated``).
"""
import gc
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time
from typing import List

from _common import summary

from .batches import BatchFactory
from .models import MIB, load_model_cfgs, state_bytes
from .variants import Variant, calibrate_teacher


#: The benchmark's entry point, which a worker subprocess runs.
TRAIN_STEP_SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                             'train_step.py')


#: glibc: serve every allocation >= 128 KiB with mmap and give it back on
#: free, so the RSS high-water mark follows live tensor memory (CPU only).
MALLOC_ENV = dict(MALLOC_MMAP_THRESHOLD_='131072',
                  MALLOC_TRIM_THRESHOLD_='131072')


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
    argv = [sys.executable, TRAIN_STEP_SCRIPT] + strip_worker_args(
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
