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

A local Ray started by the job (``ray.init()`` without an address) already ties its
gcs_server and raylet to the driver (Ray sets PR_SET_PDEATHSIG on them), but the raylet's
own children (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) only notice the raylet's
death after ~2 s and then spend up to 60 s trying to report it to the dead GCS. The job
therefore starts a :class:`Reaper` around ``ray.init``: a small stdlib-only process that
records the processes Ray starts (new children of the job and all their descendants) and
SIGKILLs the ones still running as soon as the job is gone. This file is its program
(``python lifetime.py JOB_PID``): it runs without importing xcodec or torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time

__all__ = ["POLL_SECONDS", "Reaper", "die_with_parent", "set_parent_death_signal"]

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


# ---- the reaper of a local Ray -----------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), fields[19]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
    return children


def _reap(job_pid: int, poll_seconds: float = 0.2) -> None:
    """The reaper's main loop; see :class:`Reaper`. Commands on stdin: ``seal`` (no new roots)."""
    me = os.getpid()
    before = set(_children_map().get(job_pid, []))  # the job's children that are not Ray's
    print("ready", flush=True)
    roots: dict[int, str] = {}  # processes the job started after us: pid -> start time
    known: dict[int, str] = {}  # those and every descendant seen since (kept once orphaned)
    sealed = threading.Event()
    job_gone = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:  # EOF: the job ended (its end of the pipe closed)
            if line.strip() == "seal":
                sealed.set()
        job_gone.set()

    threading.Thread(target=read_commands, daemon=True).start()
    while not job_gone.wait(poll_seconds):
        children = _children_map()
        if not sealed.is_set():
            for pid in children.get(job_pid, []):
                if pid != me and pid not in before and pid not in roots and (stat := _proc_stat(pid)):
                    roots[pid] = stat[1]
        todo = list(roots)
        while todo:
            pid = todo.pop()
            stat = _proc_stat(pid)
            if stat is None or stat[1] != known.setdefault(pid, stat[1]):
                continue  # gone, or another process under a reused pid
            todo.extend(c for c in children.get(pid, []) if c not in known)
    # The job is gone: end what it left. Twice, for children spawned during the first round.
    for _ in range(2):
        for pid, start in list(known.items()):
            stat = _proc_stat(pid)
            if stat is not None and stat[1] == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(poll_seconds)


_STARTED: list[Reaper] = []


class Reaper:
    """Ends the processes started between :meth:`start` and :meth:`seal` when this process dies.

    Use it around the call that starts child processes whose own clean-up is slow or
    missing (a local Ray)::

        reaper = Reaper.start()
        ray.init()
        reaper.seal()  # later children of the job are not its business

    The reaper process follows those children and all their descendants; when the job
    ends, ``kill -9`` included (its end of the reaper's stdin closes), it SIGKILLs the ones
    still running. Linux only (it reads /proc); elsewhere :meth:`start` returns a no-op.
    """

    def __init__(self, process: subprocess.Popen[bytes] | None):
        self.process = process

    @classmethod
    def start(cls) -> Reaper:
        if not sys.platform.startswith("linux"):
            return cls(None)
        process = subprocess.Popen(
            # -I: stdlib only, this folder's modules (cli, decode, ...) not on sys.path.
            [sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert process.stdout is not None
        # It lists the job's existing children (not its business) before Ray starts new ones.
        if process.stdout.readline().strip() != b"ready":
            raise OSError(f"the reaper process did not start (exit code {process.wait()})")
        process.stdout.close()
        reaper = cls(process)
        # Kept for the life of this process: were the pipe garbage-collected, its closing
        # would read as the job's death and the reaper would kill a Ray still in use.
        _STARTED.append(reaper)
        return reaper

    def seal(self) -> None:
        """Stop adopting new children of the job (descendants of adopted ones are still followed)."""
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(b"seal\n")
            self.process.stdin.flush()


if __name__ == "__main__":
    _reap(int(sys.argv[1]))
