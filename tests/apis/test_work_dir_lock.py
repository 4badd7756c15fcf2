"""Tests of hermes_mm.apis.work_dir_lock: one training run per work_dir,
stale locks (dead PID, reused PID) taken over, live ones refused with the
owner named."""
import json
import os
import socket
import subprocess
import sys

import pytest

from hermes_mm.apis.work_dir_lock import (LOCK_NAME, WorkDirLock,
                                          WorkDirLockedError)


def write_lock(work_dir, **owner):
    work_dir.mkdir(exist_ok=True)
    (work_dir / LOCK_NAME).write_text(json.dumps(owner))


def test_lock_is_taken_and_released(tmp_path):
    work = tmp_path / 'work'
    with WorkDirLock(str(work), 'configs/x.py') as lock:
        owner = json.loads((work / LOCK_NAME).read_text())
        assert owner['pid'] == os.getpid()
        assert owner['host'] == socket.gethostname()
        assert owner['config'] == 'configs/x.py'
        assert lock.held
    assert not (work / LOCK_NAME).exists()


def test_second_run_is_stopped_naming_the_first(tmp_path):
    work = tmp_path / 'work'
    sleeper = subprocess.Popen([sys.executable, '-c',
                                'import time; time.sleep(60)'])
    try:
        write_lock(work, pid=sleeper.pid, host=socket.gethostname(),
                   process_start=None, started='2026-11-30 10:00:00',
                   config='configs/hermes_busi.py',
                   argv=['tools/train.py', 'configs/hermes_busi.py'])
        with pytest.raises(WorkDirLockedError) as err:
            WorkDirLock(str(work)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    msg = str(err.value)
    assert f'PID {sleeper.pid} on host {socket.gethostname()!r}' in msg
    assert "config 'configs/hermes_busi.py'" in msg
    assert 'is in use by another training run' in msg
    assert 'Use another --work-dir' in msg
    # the running one's lock is left alone
    assert json.loads((work / LOCK_NAME).read_text())['pid'] == sleeper.pid


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    work = tmp_path / 'work'
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    write_lock(work, pid=dead.pid, host=socket.gethostname(),
               process_start=None, started='x', config='c', argv=[])
    with WorkDirLock(str(work)):
        assert json.loads(
            (work / LOCK_NAME).read_text())['pid'] == os.getpid()


def test_reused_pid_counts_as_stale(tmp_path):
    work = tmp_path / 'work'
    write_lock(work, pid=os.getpid(), host=socket.gethostname(),
               process_start='1', started='x', config='c', argv=[])
    lock = WorkDirLock(str(work))
    if lock.is_stale(json.loads((work / LOCK_NAME).read_text())):
        lock.acquire()  # /proc available: a different start time
        lock.release()
    else:
        pytest.skip('no /proc: process start times cannot be compared')


def test_lock_of_another_host_is_not_guessed_stale(tmp_path):
    work = tmp_path / 'work'
    write_lock(work, pid=1, host='node-17', process_start=None,
               started='x', config='c', argv=[])
    with pytest.raises(WorkDirLockedError, match='another host'):
        WorkDirLock(str(work)).acquire()
