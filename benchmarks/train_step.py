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

The harness (arguments, set-up, the order of the measurements, the report)
is this file; the measurements live in ``benchmarks/step_bench/``: model
building (``models.py``), synthetic batches (``batches.py``), the variants
and their timing loop (``variants.py``), memory in a worker subprocess
(``memory.py``), the pixel-contrast size table (``contrast.py``) and the
per-method breakdown / profile (``breakdown.py``).

Examples::

    python benchmarks/train_step.py                       # CPU, small model
    python benchmarks/train_step.py --model r50 --size 512 --device cuda \
        --amp bf16 --iters 30 --warmup 5
    python benchmarks/train_step.py --breakdown --profile  # where time goes
"""
import argparse
import gc
import json
import os.path as osp
import sys
import time
from typing import Any, Dict

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import REPO_ROOT, environment, table, write_json  # noqa: E402
from step_bench.batches import BatchFactory  # noqa: E402
from step_bench.breakdown import breakdown, profile_hermes  # noqa: E402
from step_bench.contrast import contrast_one_size, contrast_table  # noqa: E402
from step_bench.memory import (memory_worker,  # noqa: E402
                               run_worker_subprocess)
from step_bench.models import (MODEL_CONFIGS,  # noqa: E402
                               load_model_cfgs, state_bytes)
from step_bench.variants import (VARIANTS,  # noqa: E402
                                 Variant, calibrate_teacher, inference,
                                 timed_steps)


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
