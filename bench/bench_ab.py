"""A/B speed of two source trees of this package: encode and decode, interleaved, same checkpoint.

For a refactor that must not slow anything down: each round runs one fresh process per tree
(alternating which goes first), each process loads the checkpoint, encodes and decodes the
same clip (one warm-up, then ``--runs`` timed calls of ``tokenize``/``detokenize``, the
codec interface the API and tokenizer use), and reports its fastest call. The minimum
over rounds is the least load-disturbed time of each tree on a shared machine; the ratio
head / base is the answer (< 1.03: no slowdown over 3%). Codes are checked equal.

    python3 bench/bench_ab.py --base-src /tmp/base/src --head-src src \\
        --checkpoint /tmp/xcodec-bench/xcodec2 [--seconds 5] [--rounds 4] [--output bench/RESULTS.md]

``--base-src``: a ``src`` folder of the other tree (``git archive <commit> | tar -x``).
The checkpoint must be one both trees load (Transformers layout). The report replaces only
its own ``bench_ab`` section of ``--output``.
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

# Run in a fresh interpreter with PYTHONPATH at one tree: argv = checkpoint, audio, seconds, runs.
WORKER = r"""
import json, sys, time
import soundfile as sf
import torch
import xcodec
from xcodec.audio import load_audio
from xcodec.auto import AutoModel

torch.set_num_threads(int(sys.argv[5]))
checkpoint, audio, seconds, runs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
model = AutoModel.from_pretrained(checkpoint).eval()
rate = getattr(model, "input_sample_rate", model.sample_rate)
waveform = load_audio(audio, rate).waveform[: int(seconds * rate)]
batch = waveform[None].float()
lengths = torch.tensor([batch.shape[-1]])

def best(call):
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return min(times), out

with torch.inference_mode():
    encode_s, encoded = best(lambda: model.tokenize(batch, lengths))
    decode_s, _ = best(lambda: model.detokenize(encoded.audio_codes, encoded.code_lengths))
print(json.dumps({
    "file": xcodec.__file__, "encode_s": encode_s, "decode_s": decode_s,
    "codes": encoded.audio_codes[0, :, : int(encoded.code_lengths[0])].tolist(),
}))
"""


def run_side(src: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    command = [
        sys.executable,
        "-c",
        WORKER,
        str(args.checkpoint),
        str(args.audio),
        str(args.seconds),
        str(args.runs),
        str(args.threads),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"worker for {src} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = str(src.resolve() / "xcodec" / "__init__.py")
    if result["file"] != expected:
        raise SystemExit(f"worker for {src} imported {result['file']}, not {expected}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-src", type=Path, required=True)
    parser.add_argument("--head-src", type=Path, default=REPO / "src")
    parser.add_argument("--checkpoint", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="timed calls per process (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--label", default="", help="what is compared, for the report")
    parser.add_argument("--output", type=Path, default=None, help="write the bench_ab section here")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for checkpoint in args.checkpoint:
        args.checkpoint = checkpoint
        best: dict[str, dict[str, float]] = {}
        codes: dict[str, list] = {}
        for round_index in range(args.rounds):
            sides = [("base", args.base_src), ("head", args.head_src)]
            for side, src in sides if round_index % 2 == 0 else sides[::-1]:
                result = run_side(src, args)
                print(f"{checkpoint.name} round {round_index} {side}: encode {result['encode_s']:.3f} s, "
                      f"decode {result['decode_s']:.3f} s", flush=True)  # fmt: skip
                for op in ("encode_s", "decode_s"):
                    best.setdefault(side, {})[op] = min(best.get(side, {}).get(op, float("inf")), result[op])
                codes.setdefault(side, result["codes"])
        same = codes["base"] == codes["head"]
        for op in ("encode_s", "decode_s"):
            base, head = best["base"][op], best["head"][op]
            rows.append((checkpoint.name, op[:-2], base, head, head / base, same))
    load_end = os.getloadavg()

    lines = [
        "## A/B: two source trees, interleaved (bench/bench_ab.py)",
        "",
        f"- Command: `python3 bench/bench_ab.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Date: {started}; {args.label}",
        f"- {args.rounds} rounds x (base, head) fresh processes, order alternating; each: 1 warm-up + "
        f"{args.runs} timed calls of tokenize / detokenize on {args.seconds:g} s of {args.audio.name}, "
        f"{args.threads} threads; the table holds the minimum over all calls (least disturbed by load)",
        f"- Load average: {load_start[0]:.2f} at start, {load_end[0]:.2f} at end (a shared 2-core machine)",
        "",
        "| checkpoint | op | base (s) | head (s) | head / base | codes equal |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {op} | {base:.3f} | {head:.3f} | {ratio:.3f} | {'yes' if same else 'NO'} |"
        for name, op, base, head, ratio, same in rows
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output is not None:
        write_section(args.output, "bench_ab", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
