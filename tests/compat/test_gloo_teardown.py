"""hermes_mm.compat.gloo_teardown and end_distributed_worker: a finished
distributed worker exits without interpreter finalization (the gloo abort
of pytorch/pytorch#179291 happens there), yet loses no output."""
import os.path as osp
import subprocess
import sys
import textwrap

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_script(tmp_path, body):
    script = tmp_path / 'script.py'
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), str(tmp_path)],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=120)


# Buffered output that only a flush writes, and an atexit handler that
# only interpreter finalization runs.
PRELUDE = '''\
import atexit, logging, logging.handlers, pathlib, sys
tmp = pathlib.Path(sys.argv[1])
target = logging.FileHandler(tmp / 'log.txt')
buffered = logging.handlers.MemoryHandler(capacity=1000, target=target)
logger = logging.getLogger('teardown_test')
logger.addHandler(buffered)
logger.warning('logged before exit')
sys.stdout.write('printed before exit')  # no newline, stdout is a pipe
atexit.register(lambda: (tmp / 'finalized.txt').write_text('ran'))
'''


def test_exit_flushes_logging_and_streams_and_skips_finalization(tmp_path):
    proc = run_script(
        tmp_path, PRELUDE + '''\
from hermes_mm.compat.gloo_teardown import exit_skipping_finalization
exit_skipping_finalization(3)
print('not reached')
''')
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == 'printed before exit'
    assert (tmp_path / 'log.txt').read_text() == 'logged before exit\n'
    assert not (tmp_path / 'finalized.txt').exists()


def test_end_distributed_worker_exits_only_a_distributed_process(tmp_path):
    # Without a process group it returns: the caller goes on normally.
    proc = run_script(
        tmp_path, PRELUDE + '''\
from hermes_mm.apis import end_distributed_worker
end_distributed_worker()
print(' and after')
''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'printed before exit and after\n'
    assert (tmp_path / 'finalized.txt').read_text() == 'ran'

    # With one (a gloo collective holding Python tensors just ran), the
    # group is destroyed and the process ends there, with exit code 0.
    (tmp_path / 'finalized.txt').unlink()
    proc = run_script(
        tmp_path, PRELUDE + '''\
import torch, torch.distributed as dist
from hermes_mm.apis import end_distributed_worker
dist.init_process_group('gloo', init_method=f'file://{tmp / "store"}',
                        rank=0, world_size=1)
out = [None]
dist.all_gather_object(out, torch.get_rng_state())
end_distributed_worker()
print('not reached')
''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'printed before exit'
    assert (tmp_path / 'log.txt').read_text().count('logged before') == 2
    assert not (tmp_path / 'finalized.txt').exists()
