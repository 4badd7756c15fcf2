"""Leave a finished distributed worker without interpreter finalization.

Upstream: pytorch/pytorch#179291 (gloo worker threads crash interpreter
finalization; the proposed fix was abandoned, so torch 2.14 still has it).
``ProcessGroupGloo``'s worker threads release a finished collective's work
object *after* the Python caller has returned from ``wait()``. When that
object holds tensors with Python references (``all_gather_object``, which
MMEngine and our ``RandomStateHook`` use before a checkpoint), releasing
it takes the GIL. If the main thread is already in ``Py_FinalizeEx`` by
then, the worker thread is told to exit inside a ``noexcept`` frame and the
process dies with "terminate called without an active exception"
(SIGABRT); ``torchrun`` then reports the whole run as failed although every
file is written. A core dump of such a rank shows exactly that: main thread
in ``Py_FinalizeEx`` -> ``PyGC_Collect``; a ``ProcessGroupGloo::runLoop``
thread in ``~AsyncAllgatherWork`` -> ``gil_scoped_acquire`` ->
``PyThread_exit_thread`` -> ``std::terminate``.

``destroy_process_group`` does not prevent it (the worker threads outlive
it while DDP still references the group), nor does a barrier first: in
2-rank torchrun runs of the worker of ``research/gloo_teardown_stress.py``
(4 DDP steps, each with ``all_gather_object``; rank 0 0.5 s late), on a
loaded 2-core machine, 7/40 runs aborted with ``destroy_process_group``
only, 2/40 with a barrier before it, 1/30 with the model deleted and
garbage-collected first, 0/30 when the worker skipped finalization.
So ``tools/train.py`` and ``tools/test.py`` end a distributed worker with
:func:`exit_skipping_finalization` once the runner has returned and the
process group is destroyed: MMEngine closes its visualizer backends in
``LoggerHook.after_run`` and registers no ``atexit`` work, and this
function flushes ``logging`` and the standard streams itself.
"""
import logging
import os
import sys
from typing import NoReturn


def exit_skipping_finalization(code: int = 0) -> NoReturn:
    """Flush logging and stdout/stderr, then ``os._exit(code)``.

    Only for the very end of a distributed worker (after
    :func:`hermes_mm.apis.shutdown_distributed`): ``atexit`` handlers and
    object finalizers do not run.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken stream: nothing
            pass  # left that could be written anyway
    os._exit(code)


__all__ = ['exit_skipping_finalization']
