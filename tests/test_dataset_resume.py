"""Kill -9 at several points, rerun the same command: every input exactly once, no corrupt shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _oracle import require_oracle

pq = require_oracle("pyarrow.parquet")

from test_dataset_support import FACTORY, build_corpus, subprocess_env  # noqa: E402

from xcodec.cli import main  # noqa: E402
from xcodec.dataset import TokenizeOptions, read_tokens, tokenize_corpus  # noqa: E402


def many_short_files(root: Path, count: int) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(3)
    paths = []
    for number in range(count):
        path = root / "many" / f"clip{number:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.2 * rng.standard_normal(1600 + 160 * number)).astype(np.float32), 16000)
        paths.append(path)
    return paths


def command(corpus: Path, out: Path) -> list[str]:
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
        "--num-workers",
        "1",
        "--shard-size",
        "4",
        "--batch-seconds",
        "0.5",
        "--no-progress",
    ]


def start(corpus: Path, out: Path, delay: float) -> subprocess.Popen[bytes]:
    env = subprocess_env()
    env["XCODEC_TEST_ENCODE_DELAY"] = str(delay)
    # Own session: the kill takes the decode workers along, as a preemption would.
    return subprocess.Popen(
        command(corpus, out),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def shards(out: Path) -> list[Path]:
    return sorted((out / "data").glob("*.parquet")) if (out / "data").exists() else []


def kill_when(process: subprocess.Popen[bytes], ready: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"job ended before the kill point: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_at_several_points_then_resume(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    good, bad = build_corpus(corpus)
    good += many_short_files(corpus, 14)
    out = tmp_path / "out"

    # 1. Right after the plan is written, before any shard.
    process = start(corpus, out, delay=0.2)
    kill_when(process, lambda: (out / "_xcodec" / "plan.parquet").exists())
    # 2. As soon as the first shard lands.
    process = start(corpus, out, delay=0.2)
    kill_when(process, lambda: len(shards(out)) >= 1)
    landed = len(shards(out))
    # 3. Mid-shard: a while after the next shard landed, while another one is being built.
    process = start(corpus, out, delay=0.2)
    kill_when(process, lambda: len(shards(out)) >= landed + 1)
    time.sleep(0.3)
    assert not (out / "summary.json").exists(), "the job finished before the last kill; slow it down"

    for shard in shards(out):
        pq.read_table(shard)  # whatever landed is whole
    # The rerun: the same command (in-process, to save an interpreter start).
    assert main(command(corpus, out)[3:]) == 1  # 1: the broken files failed

    table = read_tokens(out)
    sources = table.column("source").to_pylist()
    assert len(sources) == len(set(sources))
    assert sorted(sources) == sorted(str(p.resolve()) for p in good)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errors) == sorted(str(p.resolve()) for p in bad)
    assert not list((out / "_xcodec" / "tmp").iterdir())

    # Tokens equal an uninterrupted run's.
    from test_dataset_support import make_fake_codec

    clean = tmp_path / "clean"
    tokenize_corpus(
        TokenizeOptions(input=str(corpus), out=str(clean), num_workers=0, shard_size=4, progress=False),
        make_fake_codec,
    )
    assert (
        read_tokens(out)
        .sort_by("id")
        .select(["id", "audio_codes"])
        .equals(read_tokens(clean).sort_by("id").select(["id", "audio_codes"]))
    )
