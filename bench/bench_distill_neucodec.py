"""DistillNeuCodec's fast encoder against NeuCodec's, same run, same input (issue 14).

    python3 bench/bench_distill_neucodec.py [--seconds 4.9] [--runs 3] [--threads 2] [--output bench/RESULTS.md]

Both models are built at their published sizes with random weights (speed does not depend
on the values); both ``tokenize`` the same clip of ../shared/audio/speech_en.flac (a
speech-like synthetic clip when it is missing). Calls are interleaved, the fastest of
``--runs`` after one warm-up call is reported, and the ratio NeuCodec / DistillNeuCodec is
the result (absolute seconds on a shared machine are inflated). The section between the
``bench_distill_neucodec`` markers of ``--output`` is replaced; nothing else is touched.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch
from _results import write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared"))
SECTION = "bench_distill_neucodec"


def load_clip(seconds: float) -> tuple[torch.Tensor, str]:
    path = SHARED / "audio" / "speech_en.flac"
    count = int(seconds * 16000)
    if path.exists():
        import soundfile as sf

        audio, rate = sf.read(path, dtype="float32")
        assert rate == 16000, rate
        return torch.from_numpy(audio[:count]), f"{path.name}, first {count / 16000:.1f} s"
    generator = torch.Generator().manual_seed(0)
    envelope = 0.05 + 0.3 * torch.sin(torch.linspace(0, 20.0, count)).abs()
    return torch.randn(count, generator=generator) * envelope, f"synthetic speech-like noise, {seconds:.1f} s"


def encoder_parameters(model: torch.nn.Module, names: tuple[str, ...]) -> int:
    return sum(p.numel() for name in names for p in getattr(model, name).parameters())


def fastest(call, runs: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.9)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "src"))
    from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
    from xcodec.configs.neucodec import NeuCodecConfig
    from xcodec.models.distill_neucodec import DistillNeuCodecModel
    from xcodec.models.neucodec import NeuCodecModel

    load_start = os.getloadavg()[0]
    clip, clip_label = load_clip(args.seconds)
    torch.manual_seed(0)
    models = {
        "NeuCodec": NeuCodecModel(NeuCodecConfig()).eval(),
        "DistillNeuCodec": DistillNeuCodecModel(DistillNeuCodecConfig()).eval(),
    }
    rows = {}
    with torch.inference_mode():
        waveforms = clip[None]
        for model in models.values():  # warm-up
            model.tokenize(waveforms)
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.runs):  # interleaved
            for name, model in models.items():
                times[name].append(fastest(lambda model=model: model.tokenize(waveforms), 1))
        for name, model in models.items():
            codes = model.tokenize(waveforms)
            decode_time = fastest(
                lambda model=model, codes=codes: model.detokenize(codes.audio_codes), args.runs
            )
            rows[name] = {
                "encoder_params": encoder_parameters(model, model.part_modules["encoder"]) / 1e6,
                "encode": min(times[name]),
                "decode": decode_time,
                "codes": int(codes.code_lengths[0]),
            }
    ratio = rows["NeuCodec"]["encode"] / rows["DistillNeuCodec"]["encode"]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## DistillNeuCodec vs NeuCodec encoder (bench/bench_distill_neucodec.py, issue 14)",
        "",
        f"- Command: `python3 bench/bench_distill_neucodec.py --seconds {args.seconds:g} --runs {args.runs} "
        f"--threads {args.threads}`",
        f"- Date: {date}; CPU, {args.threads} threads, float32, random weights at the published sizes, "
        f"one item: {clip_label}; `tokenize` (features included) and `detokenize`, fastest of {args.runs} "
        "interleaved calls after a warm-up",
        f"- Load average: {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end (shared 2-core machine: "
        "the side-by-side ratio is the result)",
        "",
        "| model | encoder params (M) | codes | encode (s) | decode (s) |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['encoder_params']:.1f} | {row['codes']} | {row['encode']:.3f} | {row['decode']:.3f} |"
        )
    lines += [
        "",
        f"NeuCodec / DistillNeuCodec encode time: **{ratio:.1f}x**. The encoder parameters are "
        'every module `parts="encoder"` keeps (semantic model included; DistillNeuCodec\'s acoustic '
        "stack alone is 21.6 M). Both decode with the same generator. DistillNeuCodec gives one code "
        "more per item (`n // 320 + 1`).",
    ]
    print(write_section(args.output, SECTION, "\n".join(lines)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
