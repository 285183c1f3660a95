"""Helper processes die with the job that started them, ``kill -9`` of the job included.

A ``ProcessPoolExecutor`` worker waits on a pipe whose write end it holds itself, so it
never sees its parent go: after ``kill -9`` of ``xcodec tokenize`` its decode workers
would live on with parent PID 1. Each helper process therefore calls
:func:`die_with_parent` first thing, which uses two mechanisms:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the helper the moment
  its parent exits, however the parent died;
- everywhere (and as a fallback should prctl be unavailable): a daemon thread that
  compares ``os.getppid()`` with the parent's PID every :data:`POLL_SECONDS` and ends the
  process when they differ (the helper was re-parented to init or a sub-reaper).

Helpers hold no state worth saving (decoded audio, or a model whose shard is written
atomically by the job), so they end with ``os._exit`` / SIGKILL and no clean-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

__all__ = ["POLL_SECONDS", "die_with_parent", "set_parent_death_signal"]

POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``signum`` to this process when its parent exits.

    Returns False where that is unavailable (not Linux, no libc). The kernel tracks the
    parent *thread* that forked us; the job starts its helpers from its main thread, so
    the signal comes when the job itself ends.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, poll_seconds: float) -> None:
    event = threading.Event()
    while not event.wait(poll_seconds):
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int, poll_seconds: float = POLL_SECONDS) -> None:
    """End this process when ``parent_pid`` (the job that started it) dies.

    Call it first thing in a helper process (a ``ProcessPoolExecutor`` initializer, the
    target of a ``multiprocessing.Process``), with the PID the parent recorded
    (``os.getpid()`` there) before starting it.
    """
    set_parent_death_signal(signal.SIGKILL)
    # The parent may have died before prctl took effect: then nothing would signal us.
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid, poll_seconds), name="xcodec-parent-watch", daemon=True
    ).start()
