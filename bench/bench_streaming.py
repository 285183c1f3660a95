"""Streaming decode (issue 15): quality against the offline decode, and latency.

    python3 bench/bench_streaming.py grid    [--threads 2] [--output bench/RESULTS.md]
    python3 bench/bench_streaming.py latency [--threads 2] [--output bench/RESULTS.md]

grid: codes of ../shared/audio/speech_en.flac (4.9 s) from the demo checkpoint
(``xcodec.load("xcodec2-demo")``) and random codes through a full-size X-Codec2 with
random weights are decoded offline (whole) and as a stream over chunk x left_context x
lookahead x crossfade; each stream's audio is scored against the offline decode (SNR dB,
log-mel distance from :mod:`xcodec.metrics`). For scale, the demo's offline decode against
the recording itself is given too.

latency: full-size X-Codec2, NeuCodec and X-Codec decoders (random weights, fp32, default
stream options, CPU threads as given), 10 s of random codes pushed in chunks: compute of
the first push that returns audio (what follows the look-ahead frames' arrival), median
compute per push after it, and the real-time factor (compute / audio). The time to first
audio of a live stream is the look-ahead (frames x 20 ms) plus that first compute.

Each part replaces only its own section of ``--output`` (markers ``bench_streaming_grid``
and ``bench_streaming_latency``), placed before "Reading these results" when new.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _results import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared"))


def _write(output: Path, name: str, lines: list[str]) -> None:
    print(write_section(output, name, "\n".join(lines)))


def streamed(model: Any, codes: torch.Tensor, chunk: int, **options: Any) -> tuple[torch.Tensor, list[float]]:
    """Audio (samples,) of ``codes`` (num_codebooks, frames) pushed ``chunk`` frames at a time; push times."""
    from xcodec.streaming import decoder_stream

    stream = decoder_stream(model, **options)
    pieces, times = [], []
    for start in range(0, codes.shape[1], chunk):
        began = time.perf_counter()
        pieces.append(stream.push(codes[:, start : start + chunk]))
        times.append(time.perf_counter() - began)
    pieces.append(stream.flush())
    return torch.cat(pieces), times


def offline(model: Any, codes: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.decode(codes[None]).audio_values[0, 0]


def machine(threads: int) -> str:
    return (
        f"- {datetime.date.today()}, torch {torch.__version__}, {threads} CPU threads, fp32; load average "
        f"{os.getloadavg()[0]:.2f} (shared 2-core machine: absolute times are inflated)"
    )


def run_grid(args: argparse.Namespace) -> None:
    import soundfile as sf

    import xcodec
    from xcodec.configs.xcodec2 import Xcodec2Config
    from xcodec.metrics import mel_distance, snr_db
    from xcodec.models.xcodec2 import Xcodec2Model

    demo = xcodec.load("xcodec2-demo")
    recording, rate = sf.read(SHARED / "audio" / "speech_en.flac", dtype="float32")
    codes = demo.encode(recording, rate)
    assert isinstance(codes, torch.Tensor)
    torch.manual_seed(0)
    full = Xcodec2Model(Xcodec2Config()).eval()
    random_codes = torch.randint(
        0, full.codebook_size, (1, codes.shape[1]), generator=torch.Generator().manual_seed(0)
    )
    cases = [
        ("demo", demo.model, codes, [2, 10], [12, 25, 50], [0, 2, 4, 8], [0, 2]),
        ("full-size random", full, random_codes, [10], [25, 50], [0, 4], [0]),
    ]
    lines = [
        "## Streaming decode quality vs the offline decode (bench/bench_streaming.py grid, issue 15)",
        "",
        f"`python3 bench/bench_streaming.py {' '.join(sys.argv[1:])}`",
        machine(args.threads),
        f"- Codes: speech_en.flac ({codes.shape[1]} frames, 4.9 s) encoded by `xcodec2-demo`; the full-size "
        "X-Codec2 with random weights decodes random codes of the same length. Each stream is scored "
        "against the offline (whole) decode of the same codes: SNR (dB, higher is closer) and log-mel "
        "distance (lower is closer).",
    ]
    for label, model, case_codes, chunks, lefts, aheads, fades in cases:
        reference = offline(model, case_codes)
        extra = ""
        if label == "demo":
            original = torch.from_numpy(recording)
            extra = (
                f" For scale, the demo's offline decode against the recording: SNR {snr_db(original, reference):.2f} dB, "
                f"mel distance {mel_distance(original, reference, 16000):.3f}."
            )
        lines += [
            "",
            f"### {label}{extra}",
            "",
            "| chunk | left_context | lookahead | crossfade | SNR (dB) | mel distance |",
            "|---|---|---|---|---|---|",
        ]
        for chunk, left, ahead, fade in itertools.product(chunks, lefts, aheads, fades):
            audio, _ = streamed(model, case_codes, chunk, left_context=left, lookahead=ahead, crossfade=fade)
            assert audio.shape == reference.shape
            snr, mel = snr_db(reference, audio), mel_distance(reference, audio, model.sample_rate)
            lines.append(f"| {chunk} | {left} | {ahead} | {fade} | {snr:.2f} | {mel:.4f} |")
            print(lines[-1], flush=True)
    _write(args.output, "bench_streaming_grid", lines)


def measure(model: Any, codes: torch.Tensor, chunk: int) -> dict[str, float]:
    """Push ``codes`` (codebooks, frames) ``chunk`` frames at a time into ``decoder_stream(model)``; timings.

    first_frames: frames pushed when audio first came out; first_ms: that push's compute;
    push_ms: median of the later pushes; RTF = compute / audio duration; latency_frames:
    the stream's own look-ahead.
    """
    from xcodec.streaming import decoder_stream

    stream = decoder_stream(model)
    frames = codes.shape[1]
    first: float | None = None
    first_frames = 0
    later: list[float] = []
    total = 0.0
    for start in range(0, frames, chunk):
        began = time.perf_counter()
        audio = stream.push(codes[:, start : start + chunk])
        spent = time.perf_counter() - began
        total += spent
        if first is None and audio.numel():
            first, first_frames = spent, min(frames, start + chunk)
        elif first is not None:
            later.append(spent)
    began = time.perf_counter()
    stream.flush()
    total += time.perf_counter() - began
    seconds = frames * model.hop_length / model.sample_rate
    per_push = statistics.median(later) if later else float("nan")
    return {
        "first_frames": first_frames,
        "first_ms": 1000 * (first or 0.0),
        "push_ms": 1000 * per_push,
        "rtf_steady": per_push / (chunk * model.hop_length / model.sample_rate),
        "rtf_whole": total / seconds,
        "latency_frames": getattr(stream, "latency_frames", 0),
    }


def run_latency(args: argparse.Namespace) -> None:
    from xcodec.configs.neucodec import NeuCodecConfig
    from xcodec.configs.xcodec import XcodecConfig
    from xcodec.configs.xcodec2 import Xcodec2Config
    from xcodec.models.neucodec import NeuCodecModel
    from xcodec.models.xcodec import XcodecModel
    from xcodec.models.xcodec2 import Xcodec2Model

    torch.manual_seed(0)
    models = {
        "X-Codec2": Xcodec2Model(Xcodec2Config()).eval(),
        "NeuCodec": NeuCodecModel(NeuCodecConfig()).eval(),
        "X-Codec": XcodecModel(XcodecConfig()).eval(),
    }
    seconds = args.seconds
    lines = [
        "## Streaming decode latency (bench/bench_streaming.py latency, issue 15)",
        "",
        f"`python3 bench/bench_streaming.py {' '.join(sys.argv[1:])}`",
        machine(args.threads),
        f"- Full-size decoders, random weights, {seconds:.0f} s of random codes per stream, default options "
        "(X-Codec2/NeuCodec: windowed; X-Codec: exact). *look-ahead*: frames that must arrive after a "
        "frame before its audio can come out (at 50 frames/s); *first compute*: the push that first "
        "returns audio; *per push*: median compute of the later pushes; RTF = compute / audio "
        "duration (< 1 keeps up with real time).",
        "",
        "| decoder | chunk (frames) | look-ahead (frames) | first compute (ms) | per push (ms) | RTF |",
        "|---|---|---|---|---|---|",
    ]
    for name, model in models.items():
        frame_rate = model.sample_rate / model.hop_length
        frames = int(seconds * frame_rate)
        generator = torch.Generator().manual_seed(1)
        codes = torch.randint(0, model.codebook_size, (model.num_codebooks, frames), generator=generator)
        offline(model, codes[:, :20])  # warm-up
        for chunk in args.chunks:
            result = measure(model, codes, chunk)
            row = (
                f"| {name} | {chunk} | {result['latency_frames']} | {result['first_ms']:.0f} | "
                f"{result['push_ms']:.0f} | {result['rtf_whole']:.2f} |"
            )
            lines.append(row)
            print(row, flush=True)
    _write(args.output, "bench_streaming_latency", lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=["grid", "latency"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="latency: stream length")
    parser.add_argument(
        "--chunks", type=int, nargs="+", default=[1, 5, 10, 25], help="latency: frames per push"
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "src"))
    with torch.inference_mode():
        run_grid(args) if args.part == "grid" else run_latency(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
