"""Throughput of ``xcodec tokenize``: audio seconds per wall second on 200 short files.

    python bench/bench_tokenize.py                       # tiny random X-Codec2, CPU, 1 and 2 workers
    python bench/bench_tokenize.py --model ckpt/         # e.g. from `xcodec random-checkpoint xcodec2 ckpt/`
    python bench/bench_tokenize.py --device cuda --workers 1,2,4 --files 200

The corpus is synthesised (1-3 s clips; a third at 44.1 kHz so resampling is part of the
work), written once to --corpus. Each row is a fresh job into its own output folder,
wall time from start to summary.json, model load included. Prints a markdown table for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_corpus(folder: Path, count: int, seed: int = 0) -> float:
    """``count`` clips of 1-3 s of speech-like noise; returns their total length in seconds."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for number in range(count):
        rate = 44100 if number % 3 == 0 else 16000
        seconds = float(rng.uniform(1.0, 3.0))
        samples = int(rate * seconds)
        envelope = np.abs(np.sin(np.linspace(0, 6 * np.pi * seconds, samples)))
        clip = 0.2 * envelope * rng.standard_normal(samples)
        sf.write(folder / f"clip{number:04d}.wav", clip.astype(np.float32), rate)
        total += samples / rate
    return total


def tiny_checkpoint(folder: Path) -> Path:
    """The test suite's tiny random X-Codec2 (bench/_tiny.py re-exports tests/_tiny.py), saved to ``folder``."""
    from _tiny import save_tiny_xcodec2

    save_tiny_xcodec2(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="checkpoint folder (default: a tiny random X-Codec2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", default="1,2", help="decode worker counts to try")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model process")
    parser.add_argument(
        "--corpus", type=Path, default=None, help="where to write the corpus (default: a temp dir)"
    )
    args = parser.parse_args()

    from xcodec.dataset import TokenizeOptions, tokenize_corpus

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="xcodec-bench-tokenize-"))
    try:
        corpus = args.corpus or scratch / "corpus"
        audio_seconds = write_corpus(corpus, args.files)
        model = args.model or str(tiny_checkpoint(scratch / "tiny"))
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            out = scratch / f"out-{workers}"
            options = TokenizeOptions(
                input=str(corpus),
                out=str(out),
                model=model,
                device=args.device,
                num_workers=workers,
                batch_seconds=args.batch_seconds,
                shard_size=100,
                progress=False,
            )
            started = time.perf_counter()
            result = tokenize_corpus(options)
            wall = time.perf_counter() - started
            summary = json.loads((out / "summary.json").read_text())
            assert summary["num_encoded"] == args.files, result.summary
            rows.append((workers, wall))
        label = "tiny random X-Codec2" if args.model is None else args.model
        print(
            f"\n### xcodec tokenize: {args.files} files, {audio_seconds:.0f} s of audio, {label}, "
            f"device {args.device}, {args.threads} model thread(s), {platform.machine()} "
            f"({torch.get_num_threads()} torch threads, {__import__('os').cpu_count()} cores)\n"
        )
        print("| decode workers | wall s | audio s / wall s | files / s |")
        print("|---:|---:|---:|---:|")
        for workers, wall in rows:
            print(f"| {workers} | {wall:.1f} | {audio_seconds / wall:.1f} | {args.files / wall:.1f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
