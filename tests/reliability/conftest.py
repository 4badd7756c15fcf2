"""Three runs of ``tools/train.py`` on a tiny Hermes, shared by the
kill/resume and determinism tests.

- ``ref``: 8 uninterrupted iterations;
- ``killed``: the same command, SIGKILLed half-way through writing the
  iteration-6 checkpoint (``configs/tiny_hermes_killed.py``);
- ``resumed``: ``--resume`` in the killed run's work_dir, to iteration 8.

All use ``--deterministic --seed 0`` and one CPU thread
(``OMP_NUM_THREADS=1``; bit-reproducibility on CPU holds for a fixed
thread count, and one thread is also the fastest on a shared machine).
``ref`` and ``killed`` run concurrently.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
from typing import NamedTuple

import pytest

from hermes_mm.datasets.splits import make_split, save_split, scan_busi
from hermes_mm.datasets.synthetic import generate_synthetic_busi

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
LAUNCHER = osp.join(HERE, 'fault_injection.py')
CONFIG = osp.join(HERE, 'configs', 'tiny_hermes.py')
KILLED_CONFIG = osp.join(HERE, 'configs', 'tiny_hermes_killed.py')
TIMEOUT = 400


class TinyRuns(NamedTuple):
    ref: str  # work dir of the uninterrupted run
    killed: str  # work dir of the killed, then resumed run
    killed_listing: dict  # file name -> size, right after the kill
    killed_last_checkpoint: str  # its content right after the kill
    ref_scalars: list  # vis_data/scalars.json lines (dicts)
    killed_scalars: list  # the same, of the killed run before resuming
    ref_records: dict  # RecordTrainingHook: iter -> [record, ...]
    resumed_records: dict  # killed + resumed run (same work_dir)
    resumed_log: str


def _command(config, work_dir, data_root, split_file, *extra):
    return [
        sys.executable, LAUNCHER, config, '--data-root', data_root,
        '--split-file', split_file, '--work-dir', work_dir,
        '--deterministic', '--seed', '0', *extra
    ]


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                PYTHONDONTWRITEBYTECODE='1')


@pytest.fixture(scope='session')
def tiny_runs(tmp_path_factory) -> TinyRuns:
    base = tmp_path_factory.mktemp('tiny_hermes')
    data_root = str(base / 'data')
    generate_synthetic_busi(data_root, num=24, seed=0, size_range=(64, 80))
    records = scan_busi(data_root, ('benign', 'malignant', 'normal'))
    split_file = str(base / 'split.json')
    save_split(make_split([(r.img_rel, r.gt_label) for r in records],
                          labeled_ratio=0.25, seed=0), split_file)
    ref, killed = str(base / 'ref'), str(base / 'killed')
    logs = {name: open(base / f'{name}.log', 'w+')
            for name in ('ref', 'killed', 'resumed')}
    procs = {
        'ref': subprocess.Popen(
            _command(CONFIG, ref, data_root, split_file), cwd=REPO,
            env=_env(), stdout=logs['ref'], stderr=subprocess.STDOUT),
        'killed': subprocess.Popen(
            _command(KILLED_CONFIG, killed, data_root, split_file),
            cwd=REPO, env=_env(), stdout=logs['killed'],
            stderr=subprocess.STDOUT),
    }
    try:
        codes = {name: p.wait(timeout=TIMEOUT) for name, p in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:  # timed out: stop only what we started
                proc.kill()
                proc.wait()

    def log_of(name):
        logs[name].seek(0)
        return logs[name].read()

    assert codes['ref'] == 0, log_of('ref')[-3000:]
    assert codes['killed'] == -signal.SIGKILL, log_of('killed')[-3000:]
    listing = {
        name: os.path.getsize(osp.join(killed, name))
        for name in os.listdir(killed)
        if osp.isfile(osp.join(killed, name))
    }
    with open(osp.join(killed, 'last_checkpoint')) as f:
        last = f.read()
    killed_scalars = read_scalars(killed)  # only the killed run's so far
    code = subprocess.call(
        _command(CONFIG, killed, data_root, split_file, '--resume'),
        cwd=REPO, env=_env(), stdout=logs['resumed'],
        stderr=subprocess.STDOUT, timeout=TIMEOUT)
    assert code == 0, log_of('resumed')[-3000:]
    runs = TinyRuns(ref, killed, listing, last, read_scalars(ref),
                    killed_scalars, read_records(ref), read_records(killed),
                    log_of('resumed'))
    for f in logs.values():
        f.close()
    return runs


def read_scalars(work_dir):
    """Every line of ``<work_dir>/<timestamp>/vis_data/scalars.json``."""
    lines = []
    for stamp in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            with open(path) as f:
                lines += [json.loads(line) for line in f if line.strip()]
    return lines


def read_records(work_dir):
    """The RecordTrainingHook lines, by 1-based iteration (a list: an
    iteration run twice, before the kill and after the resume, appears
    twice)."""
    by_iter = {}
    with open(osp.join(work_dir, 'records.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            by_iter.setdefault(record['iter'], []).append(record)
    return by_iter
