"""Child processes die with their parent and never hold its run-folder lock.

* :func:`die_with_parent` — ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in a child (a verifier worker, a
  simulated-teacher or vLLM server process): when the process that started it dies — kill -9 included,
  where no cleanup runs — the kernel kills the child too, instead of leaving it re-parented to init,
  blocked on a pipe. On systems without ``prctl`` it does nothing (the watchdog below still helps).
* :func:`parent_watchdog` — a daemon thread in the child that exits it when its parent changes
  (the kernel re-parents orphans), for start methods where the death signal is not armed in time.
* Forked children close the run folder's lock descriptor (``tracesynth.rundir.store``
  registers that at fork), so a worker that outlives its parent can never block the next stage.

This module arms signals and threads in child processes; it starts no process itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when armed.

    ``parent``: the pid the caller expects as parent; if it is already gone (the parent died between
    the fork and this call) the process exits at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except OSError:
            armed = False
    if parent is not None and os.getppid() != parent:
        os._exit(1)
    return armed


def parent_watchdog(parent: int, interval_s: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process when its parent is no longer ``parent``."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(interval_s)

    t = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    t.start()
    return t


def preexec_die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: the server child dies with this process."""
    die_with_parent()


__all__ = ["die_with_parent", "parent_watchdog", "preexec_die_with_parent"]
