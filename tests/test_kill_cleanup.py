"""``kill -9`` of a running ``xcodec tokenize``: every process it started ends within seconds.

Only the job's own PID is killed (not its process group, as a preemption of the group
would): its decode workers, device processes and, with ``--engine ray``, the local Ray it
started must notice on their own (see xcodec.dataset.lifetime).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _oracle import require_oracle

require_oracle("pyarrow")

from test_dataset_resume import many_short_files  # noqa: E402
from test_dataset_support import FACTORY, subprocess_env  # noqa: E402

from xcodec.dataset.lifetime import die_with_parent, set_parent_death_signal  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="walks /proc")


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid`` from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every live process below ``root`` (recursively): pid -> (start time, command line)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
    found: dict[int, tuple[str, str]] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        stat = _stat(pid)
        if stat is None or pid in found:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = "?"
        found[pid] = (stat[2], cmdline.strip()[:200])
        todo.extend(children.get(pid, []))
    return found


def alive(pid: int, start_time: str) -> bool:
    """Still running: the same process (same start time, so not a reused PID) and not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[2] == start_time and stat[1] != "Z"


def survivors(recorded: dict[int, tuple[str, str]], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [f"{pid}: {cmd}" for pid, (start, cmd) in recorded.items() if alive(pid, start)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def tokenize_command(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xcodec.cli",
        "tokenize",
        str(corpus),
        "--out",
        str(out),
        "--codec-factory",
        FACTORY,
        "--shard-size",
        "4",
        "--batch-seconds",
        "0.5",
        "--no-progress",
        *extra,
    ]


def kill_mid_run(
    command: list[str], out: Path, expected: int, env: dict[str, str], timeout: float = 120.0
) -> dict[int, tuple[str, str]]:
    """Start ``command``; once a shard has landed and ``expected`` helpers run, SIGKILL the job alone.

    Returns the helpers recorded just before the kill.
    """
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    recorded: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"job ended before the kill: {process.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
            recorded = descendants(process.pid)
            if len(recorded) >= expected and any((out / "data").glob("*.parquet")):
                break
            assert time.monotonic() < deadline, f"no shard / {expected} helpers after {timeout} s: {recorded}"
            time.sleep(0.1)
        recorded = descendants(process.pid)  # the latest picture, just before the kill
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    return recorded


def test_sigkill_local_job_ends_decode_workers(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    many_short_files(corpus, 40)
    out = tmp_path / "out"
    env = subprocess_env()
    env["XCODEC_TEST_ENCODE_DELAY"] = "0.3"  # 10 shards x 0.3 s+: still running at the kill
    # Two decode workers and multiprocessing's resource tracker.
    recorded = kill_mid_run(tokenize_command(corpus, out, "--num-workers", "2"), out, expected=3, env=env)
    assert not (out / "summary.json").exists(), "the job finished before the kill; slow it down"
    workers = [cmd for _, cmd in recorded.values() if "multiprocessing" in cmd]
    assert len(workers) >= 2, recorded
    left = survivors(recorded, timeout=10.0)
    assert not left, f"still running 10 s after kill -9 of the job: {left}"


def test_sigkill_device_processes_and_their_workers(tmp_path: Path) -> None:
    """--devices: one process per device, each with its own decode worker; all end with the job."""
    corpus = tmp_path / "corpus"
    many_short_files(corpus, 40)
    out = tmp_path / "out"
    env = subprocess_env()
    env["XCODEC_TEST_ENCODE_DELAY"] = "0.3"
    command = tokenize_command(corpus, out, "--num-workers", "2", "--devices", "cpu,cpu")
    # Two device processes, a decode worker each, resource trackers.
    recorded = kill_mid_run(command, out, expected=5, env=env)
    assert not (out / "summary.json").exists(), "the job finished before the kill; slow it down"
    left = survivors(recorded, timeout=10.0)
    assert not left, f"still running 10 s after kill -9 of the job: {left}"


_ORPHAN = """
import os, sys, time, multiprocessing
from xcodec.dataset.lifetime import die_with_parent

def child(parent, use_signal):
    if not use_signal:  # the portable fallback alone: the getppid() watch thread
        import xcodec.dataset.lifetime as lifetime
        lifetime.set_parent_death_signal = lambda *a: False
    die_with_parent(parent, poll_seconds=0.1)
    print("ready", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=child, args=(os.getpid(), sys.argv[1] == "1"))
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("use_signal", [True, False], ids=["pdeathsig", "getppid-watch"])
def test_die_with_parent_each_mechanism(tmp_path: Path, use_signal: bool) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    parent = subprocess.Popen(
        [sys.executable, str(script), "1" if use_signal else "0"],
        stdout=subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == b"ready"  # the child's watch is on
        recorded = descendants(parent.pid)
        assert child in recorded, recorded
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert not survivors({child: recorded[child]}, timeout=5.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


def test_parent_death_signal_is_available_on_linux() -> None:
    # In this (pytest) process: harmless, our parent outlives the test run.
    assert set_parent_death_signal(0)  # signal 0 clears it again
    assert callable(die_with_parent)


def test_sigkill_ray_job_ends_its_local_ray(tmp_path: Path) -> None:
    """--engine ray without an address starts a local Ray: its processes end with the job."""
    require_oracle("ray")
    corpus = tmp_path / "corpus"
    many_short_files(corpus, 40)
    out = tmp_path / "out"
    env = subprocess_env()
    env["XCODEC_TEST_ENCODE_DELAY"] = "0.3"
    env.pop("RAY_ADDRESS", None)
    command = tokenize_command(corpus, out, "--engine", "ray", "--num-workers", "0", "--ray-batch-size", "4")
    # gcs_server, raylet and their helpers, plus Ray workers: well over 5 once a shard has landed.
    recorded = kill_mid_run(command, out, expected=5, env=env, timeout=240.0)
    assert not (out / "summary.json").exists(), "the job finished before the kill; slow it down"
    assert any("raylet" in cmd for _, cmd in recorded.values()), recorded
    left = survivors(recorded, timeout=10.0)
    assert not left, f"still running 10 s after kill -9 of the job: {left}"
