"""``torch.compile(fullgraph=True)`` against eager, same process, same inputs: encode and decode.

The model card's compile example (``torch.compile(model, fullgraph=True)``) promises a
speed-up; this measures what it buys on this machine's CPU for each checkpoint given:
the first compiled call (compilation included), then eager and compiled calls
interleaved (``--runs`` each, after one warm-up) so both see the same load, reporting the
fastest of each. Tokens must be equal and audio within 1e-4 of its peak, or the row says so.

    python3 bench/bench_compile.py --checkpoint xcodec2-demo \\
        --checkpoint /tmp/xcodec-bench/xcodec2 --checkpoint /tmp/xcodec-bench/xcodec \\
        [--seconds 5] [--runs 3] [--threads 2] [--output bench/RESULTS.md]

Full-size random checkpoints: ``xcodec random-checkpoint xcodec2 /tmp/xcodec-bench/xcodec2``
(and ``xcodec``). Each checkpoint runs in a fresh process (a clean dynamo cache, no memory
carried over). The report replaces only its own ``bench_compile`` section of ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import write_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared")) / "audio" / "speech_en.flac"

# argv: checkpoint, audio, seconds, runs, threads. Prints one JSON line.
WORKER = r"""
import json, sys, time
import torch
from xcodec.audio import load_audio
from xcodec.auto import AutoFeatureExtractor, AutoModel

checkpoint, audio, seconds, runs, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = AutoModel.from_pretrained(checkpoint).eval()
rate = model.input_sample_rate
waveform = load_audio(audio, rate).waveform[: int(seconds * rate)].float()
if model.config.model_type == "xcodec":
    inputs = {"input_values": waveform[None, None]}
else:
    extractor = AutoFeatureExtractor.from_pretrained(checkpoint)
    inputs = dict(extractor(audio=waveform.numpy(), sampling_rate=rate, return_tensors="pt"))

def timed(call):
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out

with torch.inference_mode():
    eager_encode = lambda: model.encode(**inputs)
    _, encoded = timed(eager_encode)
    codes = encoded.audio_codes
    eager_decode = lambda: model.decode(codes)
    _, decoded = timed(eager_decode)
    compiled_encode_fn = torch.compile(model.encode, fullgraph=True, dynamic=False)
    compiled_decode_fn = torch.compile(model.decode, fullgraph=True, dynamic=False)
    first_encode_s, compiled_encoded = timed(lambda: compiled_encode_fn(**inputs))
    first_decode_s, compiled_decoded = timed(lambda: compiled_decode_fn(codes))
    best = {"eager_encode": [], "eager_decode": [], "compiled_encode": [], "compiled_decode": []}
    for _ in range(runs):
        best["eager_encode"].append(timed(eager_encode)[0])
        best["compiled_encode"].append(timed(lambda: compiled_encode_fn(**inputs))[0])
        best["eager_decode"].append(timed(eager_decode)[0])
        best["compiled_decode"].append(timed(lambda: compiled_decode_fn(codes))[0])
reference = decoded.audio_values
peak = float(reference.abs().max())
print(json.dumps({
    "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    "first_encode_s": first_encode_s, "first_decode_s": first_decode_s,
    **{name: min(values) for name, values in best.items()},
    "codes_equal": bool(torch.equal(compiled_encoded.audio_codes, codes)),
    "distinct_codes": int(codes.unique().numel()),
    "audio_max_error_of_peak": float((compiled_decoded.audio_values - reference).abs().max()) / max(peak, 1e-12),
}))
"""


def run_checkpoint(checkpoint: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-c", WORKER, checkpoint, str(args.audio), str(args.seconds), str(args.runs)]
    command.append(str(args.threads))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"worker for {checkpoint} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="hub id, folder or packaged name"
    )
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3, help="timed calls of each kind, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--output", type=Path, default=None, help="write the bench_compile section here")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for checkpoint in args.checkpoint:
        result = run_checkpoint(checkpoint, args)
        print(checkpoint, json.dumps(result), flush=True)
        rows.append((checkpoint, result))
    load_end = os.getloadavg()

    lines = [
        "## torch.compile vs eager (bench/bench_compile.py)",
        "",
        f"- Command: `python3 bench/bench_compile.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Date: {started}; CPU, {args.threads} threads, float32, one item of {args.seconds:g} s of "
        f"{args.audio.name}; `torch.compile(fullgraph=True, dynamic=False)` of `encode` and `decode`",
        f"- Fastest of {args.runs} interleaved eager / compiled calls after the first (compiling) call",
        f"- Load average: {load_start[0]:.2f} at start, {load_end[0]:.2f} at end (a shared 2-core machine: "
        "the ratios, measured side by side, matter more than the seconds)",
        "",
        "| checkpoint | params (M) | op | first compiled call (s) | eager (s) | compiled (s) | eager / compiled "
        "| tokens equal | audio max error / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for checkpoint, r in rows:
        for op in ("encode", "decode"):
            eager, compiled = r[f"eager_{op}"], r[f"compiled_{op}"]
            equal = ("yes" if r["codes_equal"] else "NO") if op == "encode" else ""
            error = f"{r['audio_max_error_of_peak']:.1e}" if op == "decode" else ""
            lines.append(
                f"| {Path(checkpoint).name} | {r['params_m']:.1f} | {op} | {r[f'first_{op}_s']:.1f} | "
                f"{eager:.3f} | {compiled:.3f} | {eager / compiled:.2f}x | {equal} | {error} |"
            )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output is not None:
        write_section(args.output, "bench_compile", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
