"""How often a finished 2-rank gloo run aborts at exit, per ending.

Each run is ``torchrun --nproc_per_node 2`` of a small worker (this file
with ``--worker``): DDP over a 2-layer MLP, ``--steps`` SGD steps, each
followed by ``all_gather_object`` of the torch generator state (what
``RandomStateHook`` does before a checkpoint), rank 0 then busy for
``--late`` seconds (as when it writes the checkpoint), then one of these
endings:

* ``destroy``: ``torch.distributed.destroy_process_group()`` only;
* ``shutdown``: :func:`hermes_mm.apis.shutdown_distributed` (barrier, then
  destroy);
* ``end_worker``: :func:`hermes_mm.apis.end_distributed_worker` (what
  ``tools/train.py`` and ``tools/test.py`` do: shutdown, then exit without
  interpreter finalization; pytorch/pytorch#179291).

A run fails when torchrun's exit code is not 0; the table also counts the
runs whose output has gloo's "terminate called without an active
exception". Endings are interleaved run by run, so they share the
machine's load. The abort is a race, more likely on a loaded machine.

    python research/gloo_teardown_stress.py --runs 40
"""
import argparse
import os
import os.path as osp
import socket
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as torch_dist

from hermes_mm.apis import end_distributed_worker, shutdown_distributed

# the benchmark helpers (_common) live in benchmarks/
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'benchmarks'))
from _common import REPO_ROOT, environment, table, write_json  # noqa: E402

ABORT_TEXT = 'terminate called without an active exception'


# Every ending runs with hermes_mm imported, so the runs differ only there.
ENDINGS = dict(
    destroy=torch_dist.destroy_process_group,
    shutdown=shutdown_distributed,
    end_worker=end_distributed_worker)


def worker(ending: str, steps: int, late: float) -> None:
    """One rank of one run (called under torchrun)."""
    torch_dist.init_process_group('gloo')
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    torch.manual_seed(rank)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = model(torch.randn(8, 64)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        gathered = [None] * world_size
        torch_dist.all_gather_object(gathered, torch.get_rng_state())
    if rank == 0:
        time.sleep(late)
    ENDINGS[ending]()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def one_run(ending: str, steps: int, late: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT, env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    start = time.perf_counter()
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_port',
        str(free_port()),
        osp.abspath(__file__), '--worker', ending, '--steps',
        str(steps), '--late',
        str(late)
    ],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    output = proc.stdout + proc.stderr
    return dict(
        ending=ending,
        returncode=proc.returncode,
        abort_message=ABORT_TEXT in output,
        seconds=round(time.perf_counter() - start, 2),
        output_tail=output[-2000:] if proc.returncode else '')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=40,
                        help='runs per ending')
    parser.add_argument('--endings', nargs='+', choices=sorted(ENDINGS),
                        default=['destroy', 'shutdown', 'end_worker'])
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--late', type=float, default=0.5,
                        help='seconds rank 0 stays busy after the last '
                        'collective')
    parser.add_argument('--out', default=osp.join(
        REPO_ROOT, 'benchmarks', 'runs', 'gloo_teardown', 'results.json'))
    parser.add_argument('--worker', choices=sorted(ENDINGS),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.late)
        return {}
    if args.runs < 1:
        raise SystemExit(f'--runs must be >= 1, got {args.runs}')
    start = time.perf_counter()
    runs = []
    for index in range(args.runs):
        for ending in args.endings:
            run = one_run(ending, args.steps, args.late)
            runs.append(dict(run, index=index))
            if run['returncode']:
                print(f'run {index} {ending}: exit code {run["returncode"]}'
                      f'{" (gloo abort)" if run["abort_message"] else ""}')
    summary = {}
    for ending in args.endings:
        mine = [r for r in runs if r['ending'] == ending]
        summary[ending] = dict(
            runs=len(mine),
            failed=sum(r['returncode'] != 0 for r in mine),
            gloo_abort=sum(r['abort_message'] for r in mine),
            mean_seconds=round(statistics.mean(r['seconds'] for r in mine),
                               2))
    print(
        table(['ending', 'runs', 'failed', 'gloo abort', 's/run'],
              [[e, s['runs'], s['failed'], s['gloo_abort'], s['mean_seconds']]
               for e, s in summary.items()]))
    result = dict(
        measured='exit code of 2-rank torchrun gloo runs per ending',
        settings=dict(
            runs=args.runs, steps=args.steps, late=args.late,
            endings=args.endings),
        summary=summary,
        runs=runs,
        seconds=round(time.perf_counter() - start, 1),
        environment=environment())
    write_json(args.out, result)
    print(f'wrote {args.out} ({result["seconds"]} s)')
    return result


if __name__ == '__main__':
    main()
