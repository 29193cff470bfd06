"""SIGTERM handled like SIGINT, and worker processes that stop with their parent.

- :func:`terminate_as_interrupt`: while active (in the main thread), SIGTERM raises :class:`Terminated`,
  a subclass of KeyboardInterrupt, so every ``except KeyboardInterrupt`` clean-up path (e.g.
  ``nctheory verify --jobs``'s pool shutdown) runs for ``kill PID`` exactly as for Ctrl-C. The handler
  raises once; a second SIGTERM during the clean-up gets the default action (the process ends).
- :func:`stop_worker_processes`: terminate (then kill) every live multiprocessing child of this
  process; the dispatcher calls it after an interrupt as a backstop for commands without their own.
- :func:`worker_initializer`: for ``ProcessPoolExecutor(initializer=...)``: the worker ignores SIGINT
  (Ctrl-C reaches the whole process group; the parent stops its workers itself, so the workers print
  no KeyboardInterrupt tracebacks) and, on Linux, asks for SIGTERM when its parent dies
  (PR_SET_PDEATHSIG), so even a SIGKILLed parent leaves no worker running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM received (raised in the main thread by :func:`terminate_as_interrupt`'s handler)."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler is restored after.
    Outside the main thread (where Python cannot install handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_worker_processes(timeout: float = 3.0) -> int:
    """Terminate every live multiprocessing child of this process (SIGTERM, then SIGKILL for those still
    alive after ``timeout`` seconds); returns how many were stopped."""
    import multiprocessing

    children = [p for p in multiprocessing.active_children() if p.is_alive()]
    for p in children:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in children:
        with contextlib.suppress(Exception):
            p.join(timeout)
        if p.is_alive():
            with contextlib.suppress(Exception):
                p.kill()
                p.join(1.0)
    return len(children)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_initializer() -> None:
    """Run at the start of a worker process: ignore SIGINT (the parent stops its workers) and, on Linux,
    receive SIGTERM when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
