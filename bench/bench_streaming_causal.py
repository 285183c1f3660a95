"""Streaming latency of X-Codec2-Streaming (the causal decoder) next to the windowed bidirectional stream.

    python3 bench/bench_streaming_causal.py [--threads 2] [--seconds 4] [--chunks 1 5 25]
                                            [--output bench/RESULTS.md]

Full-size X-Codec2 decoders (``Xcodec2Config()``, random weights, fp32, encoder dropped):
the causal one (``decoder_causal``, attention window 64 frames, exact stream with a bounded
state) and the bidirectional one streamed with the windowed defaults (left context 50,
look-ahead 4, crossfade 2), both measured in this run on the same random codes. For each
chunk size (frames per push, 20 ms each): the frames that had to arrive before the first
audio came out, the compute of that push (first audio = arrival of those frames + this),
the median compute of the later pushes, and two real-time factors: steady (median push /
chunk duration) and whole (all compute / audio duration). The windowed 1-frame row
streams only ``--windowed-1-seconds`` (its pushes each re-decode a ~55-frame window).

Writes its own section (markers ``bench_streaming_causal``) of ``--output``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import torch
from _results import write_section
from bench_streaming import measure

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--windowed-1-seconds", type=float, default=1.6)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 5, 25])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--device", default="cpu", help="torch device of the decoders (cpu, cuda)")
    parser.add_argument("--section", default="bench_streaming_causal", help="marker name of the section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "src"))
    from xcodec.configs.xcodec2 import Xcodec2Config
    from xcodec.models.xcodec2 import Xcodec2Model

    torch.manual_seed(0)
    models = {}
    for name, causal in (("causal (X-Codec2-Streaming)", True), ("bidirectional, windowed 50/4/2", False)):
        model = Xcodec2Model(Xcodec2Config(decoder_causal=causal)).eval()
        model.drop_unused_parts("decoder")
        models[name] = model.to(args.device)
    load_before = os.getloadavg()[0]
    rows = []
    timer_sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for name, model in models.items():
            frames = int(args.seconds * model.sample_rate / model.hop_length)
            generator = torch.Generator().manual_seed(1)
            codes = torch.randint(0, model.codebook_size, (1, frames), generator=generator).to(args.device)
            model.decode(codes[None, :, :20])  # warm-up
            measure(model, codes[:, :10], 1)  # warm-up of the stream's own kernels
            timer_sync()
            for chunk in args.chunks:
                use = codes
                if chunk == 1 and not model.config.decoder_causal:
                    use = codes[:, : int(args.windowed_1_seconds * model.sample_rate / model.hop_length)]
                result = measure(model, use, chunk)
                row = (
                    f"| {name} | {chunk} | {result['first_frames']} | {result['first_ms']:.0f} | "
                    f"{result['push_ms']:.0f} | {result['rtf_steady']:.2f} | {result['rtf_whole']:.2f} |"
                )
                rows.append(row)
                print(row, flush=True)
    load_after = os.getloadavg()[0]
    where = f"{args.threads} CPU threads"
    if torch.device(args.device).type == "cuda":
        where = f"{torch.cuda.get_device_name()} ({args.threads} CPU threads beside it)"
    lines = [
        f"## Causal decoder (X-Codec2-Streaming) latency, {args.device} (bench/bench_streaming_causal.py, issue 15 item 4)",
        "",
        f"`python3 bench/bench_streaming_causal.py {' '.join(sys.argv[1:])}`",
        f"- {datetime.date.today()}, torch {torch.__version__}, {where}, fp32; load average "
        f"{load_before:.2f} before / {load_after:.2f} after on {os.cpu_count()} cores (a load above the core "
        "count means other jobs shared the CPU and inflated absolute times; the ratio between rows of one "
        "run is the reading)",
        f"- Full-size X-Codec2 decoders, random weights, {args.seconds:g} s of random codes (the windowed "
        f"1-frame row: {args.windowed_1_seconds:g} s). *frames at first audio*: frames that had arrived when "
        "the first audio came out (20 ms each; the causal stream's only wait is the ISTFT head's 480-sample "
        "tail, so its first samples come with the second frame); *first compute*: that push's compute; "
        "*per push*: median compute of the later pushes; RTF steady = per push / chunk duration, "
        "RTF whole = all compute / audio (< 1 keeps up with real time).",
        "",
        "| decoder | chunk (frames) | frames at first audio | first compute (ms) | per push (ms) "
        "| RTF steady | RTF whole |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    print(write_section(args.output, args.section, "\n".join(lines)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
