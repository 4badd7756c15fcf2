"""One training run per work_dir: a lock file naming the running process.

Two runs sharing a work_dir both exit 0 while overwriting each other's
``iter_*.pth``, ``best_*.pth`` and ``last_checkpoint``, and one run's
``max_keep_ckpts`` deletes the other's checkpoints. :class:`WorkDirLock`
creates ``<work_dir>/train.lock`` atomically (``O_CREAT | O_EXCL``)
holding the PID, host, process start time, start date and command line,
and a second run stops with :class:`WorkDirLockedError` naming them.

A lock left by a run that died without cleaning up (SIGKILL, power loss)
is *stale* and taken over, with a warning, when it names this host and its
PID is no longer running (or now belongs to a process started at another
time: a reused PID). A lock of another host cannot be checked from here;
the error says so and how to remove it.

Only the launching process (rank 0, or a run without a launcher) takes the
lock; the other ranks of a distributed run share it.
"""
import json
import logging
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional

from mmengine.logging import print_log

LOCK_NAME = 'train.lock'


class WorkDirLockedError(RuntimeError):
    """Another run holds the work_dir's lock."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell
    a reused PID; None where ``/proc`` is not available."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except OSError:
        return None
    # field 22; the command name (field 2) may hold spaces, skip past ')'
    return stat.rsplit(')', 1)[-1].split()[19]


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_launcher_rank() -> bool:
    """Whether this process takes the lock (rank 0 or no launcher)."""
    return os.environ.get('RANK', '0') == '0'


class WorkDirLock:
    """Hold ``<work_dir>/train.lock`` while training.

    Use as a context manager, or :meth:`acquire` / :meth:`release`.

    Args:
        work_dir (str): The run's work_dir (created if missing).
        config (str, optional): The config path, written into the lock.
    """

    def __init__(self, work_dir: str, config: Optional[str] = None) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self.config = config
        self.held = False

    def _owner(self) -> dict:
        pid = os.getpid()
        return dict(
            pid=pid,
            host=socket.gethostname(),
            process_start=_process_start(pid),
            started=time.strftime('%Y-%m-%d %H:%M:%S %z'),
            config=self.config,
            argv=sys.argv)

    def read(self) -> Optional[dict]:
        """The lock's content; ``{}`` if unreadable, None if absent."""
        try:
            with open(self.path, encoding='utf-8') as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def is_stale(self, owner: dict) -> bool:
        """Whether the run named by ``owner`` is certainly not running."""
        if owner.get('host') != socket.gethostname():
            return False  # cannot check another machine's processes
        pid = owner.get('pid')
        if not isinstance(pid, int) or not _pid_running(pid):
            return True
        start = owner.get('process_start')
        return start is not None and _process_start(pid) not in (None, start)

    def describe(self, owner: dict) -> str:
        return (f"PID {owner.get('pid')} on host {owner.get('host')!r}, "
                f"started {owner.get('started')}, config "
                f"{owner.get('config')!r}, command "
                f"{' '.join(map(str, owner.get('argv') or []))!r}")

    def acquire(self) -> 'WorkDirLock':
        """Take the lock.

        Raises:
            WorkDirLockedError: Another run (alive, or on another host)
                holds it.
        """
        os.makedirs(self.work_dir, exist_ok=True)
        owner = self._owner()
        for _ in range(2):  # second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644)
            except FileExistsError:
                current = self.read()
                if current is None:
                    continue  # released in between: try again
                if not current or not self.is_stale(current):
                    raise WorkDirLockedError(self._locked_message(current))
                print_log(
                    f'Removing the stale lock {self.path!r} of a run that '
                    f'is no longer running ({self.describe(current)}).',
                    logger='current', level=logging.WARNING)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                json.dump(owner, f, indent=1)
            self.held = True
            return self
        raise WorkDirLockedError(self._locked_message(self.read() or {}))

    def _locked_message(self, owner: dict) -> str:
        who = (self.describe(owner) if owner else
               'an unreadable lock file')
        other_host = owner and owner.get('host') != socket.gethostname()
        hint = (' It was taken on another host, which this run cannot '
                'check.' if other_host else '')
        return (f'work_dir {self.work_dir!r} is in use by another training '
                f'run: {who}.{hint} Two runs in one work_dir overwrite each '
                f"other's checkpoints and last_checkpoint. Use another "
                f'--work-dir, or wait for that run to finish; if it is '
                f'certainly not running, delete {self.path!r}.')

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if not self.held:
            return
        current = self.read()
        if current and current.get('pid') == os.getpid() and current.get(
                'host') == socket.gethostname():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = [
    'LOCK_NAME', 'WorkDirLock', 'WorkDirLockedError', 'is_launcher_rank'
]
