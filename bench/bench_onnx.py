"""onnxruntime against PyTorch on this CPU, same process, same inputs: encode and decode, fp32, int8 and fp16.

For each checkpoint the script exports the ONNX graphs (fp32, then a dynamic-int8 copy),
then times, interleaved so all see the same load, ``--runs`` calls of each (the fastest
reported, after one warm-up): PyTorch (``Xcodec2Model.encode/decode`` through the
batch-invariant path the backends share: ``tokenize``/``detokenize``), onnxruntime fp32
onnxruntime int8 and onnxruntime fp16 (``--dtype float16``'s conversion), on the first 5 s
and 20 s of a real recording (looped when shorter). Quality: onnxruntime fp32 against
PyTorch (codes agreement, audio error of the peak), int8 and fp16 against fp32 (codes
agreement with PyTorch's; SNR and log-mel distance of the decoded audio, :mod:`xcodec.metrics`).

    python3 bench/bench_onnx.py --checkpoint xcodec2-demo \\
        --checkpoint /tmp/xcodec-bench/xcodec2 --decoder-only /tmp/xcodec-bench/xcodec2 \\
        [--seconds 5 20] [--runs 3] [--threads 2] [--output bench/RESULTS.md]

Full-size random checkpoint: ``xcodec random-checkpoint xcodec2 /tmp/xcodec-bench/xcodec2``.
``--decoder-only`` skips a checkpoint's encoder (exporting a full-size W2V-BERT encoder
takes tens of minutes on 2 cores). The report replaces only its own ``bench_onnx``
section of ``--output``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _results import write_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared")) / "audio" / "speech_en.flac"


def _fastest(call: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_checkpoint(
    checkpoint: str, audio: Path, seconds_list: list[float], runs: int, threads: int, decoder_only: bool
) -> list[dict[str, Any]]:
    from xcodec.audio import load_audio
    from xcodec.auto import AutoModel
    from xcodec.metrics.signal import snr_db
    from xcodec.metrics.spectral import mel_distance
    from xcodec.onnx.export import convert_float16, export_onnx, quantize_int8
    from xcodec.onnx.runtime import OnnxCodec

    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    rate = model.input_sample_rate
    recording = load_audio(audio, rate).waveform.numpy()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir, int8_dir, fp16_dir = Path(tmp) / "fp32", Path(tmp) / "int8", Path(tmp) / "fp16"
        start = time.perf_counter()
        export_onnx(model, fp32_dir, part="decoder" if decoder_only else "both")
        export_s = time.perf_counter() - start
        export_onnx_copy(fp32_dir, int8_dir)
        for entry in ("encoder.onnx", "decoder.onnx"):
            if (int8_dir / entry).exists():
                quantize_int8(int8_dir / entry)
        export_onnx_copy(fp32_dir, fp16_dir, quantize=None, dtype="float16")
        for entry in ("encoder.onnx", "decoder.onnx"):
            if (fp16_dir / entry).exists():
                convert_float16(fp16_dir / entry)
        fp32 = OnnxCodec(fp32_dir, threads=threads)
        int8 = OnnxCodec(int8_dir, threads=threads)
        fp16 = OnnxCodec(fp16_dir, threads=threads)
        for seconds in seconds_list:
            samples = int(seconds * rate)
            waveform = np.resize(recording, samples).astype(np.float32)  # looped when shorter
            with torch.inference_mode():
                if decoder_only:
                    # Random weights put every frame of real audio on one code; uniformly
                    # random codes exercise the decoder (and int8's error) everywhere.
                    generator = torch.Generator().manual_seed(0)
                    frames = model.frames_for(samples)
                    codes = torch.randint(
                        0, model.codebook_size, (model.num_codebooks, frames), generator=generator
                    )
                else:
                    codes = model.tokenize(torch.from_numpy(waveform)[None]).audio_codes[0]
                torch_audio = model.detokenize(codes[None]).audio[0].numpy()
            codes_np = codes.numpy()
            row: dict[str, Any] = {
                "checkpoint": checkpoint,
                "seconds": seconds,
                "export_s": export_s,
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            }
            with torch.inference_mode():
                row["torch_decode_s"] = _fastest(lambda c=codes: model.detokenize(c[None]), runs)
            row["ort_decode_s"] = _fastest(lambda c=codes_np: fp32.decode(c), runs)
            row["int8_decode_s"] = _fastest(lambda c=codes_np: int8.decode(c), runs)
            row["fp16_decode_s"] = _fastest(lambda c=codes_np: fp16.decode(c), runs)
            ort_audio = fp32.decode(codes_np)
            int8_audio = int8.decode(codes_np)
            fp16_audio = fp16.decode(codes_np)
            peak = float(np.abs(torch_audio).max())
            row["ort_audio_error_of_peak"] = float(np.abs(ort_audio - torch_audio).max()) / max(peak, 1e-12)
            row["int8_snr_db"] = snr_db(ort_audio, int8_audio)
            row["int8_mel_distance"] = mel_distance(ort_audio, int8_audio, model.sample_rate)
            row["fp16_snr_db"] = snr_db(ort_audio, fp16_audio)
            row["fp16_mel_distance"] = mel_distance(ort_audio, fp16_audio, model.sample_rate)
            row["distinct_codes"] = int(np.unique(codes_np).size)
            if not decoder_only:
                with torch.inference_mode():
                    row["torch_encode_s"] = _fastest(
                        lambda w=waveform: model.tokenize(torch.from_numpy(w)[None]), runs
                    )
                row["ort_encode_s"] = _fastest(lambda w=waveform: fp32.encode(w, sampling_rate=rate), runs)
                row["int8_encode_s"] = _fastest(lambda w=waveform: int8.encode(w, sampling_rate=rate), runs)
                row["fp16_encode_s"] = _fastest(lambda w=waveform: fp16.encode(w, sampling_rate=rate), runs)
                ort_codes = fp32.encode(waveform, sampling_rate=rate)
                int8_codes = int8.encode(waveform, sampling_rate=rate)
                fp16_codes = fp16.encode(waveform, sampling_rate=rate)
                row["ort_codes_agreement"] = (
                    float((ort_codes == codes_np).mean()) if ort_codes.shape == codes_np.shape else 0.0
                )
                row["int8_codes_agreement"] = (
                    float((int8_codes == codes_np).mean()) if int8_codes.shape == codes_np.shape else 0.0
                )
                row["fp16_codes_agreement"] = (
                    float((fp16_codes == codes_np).mean()) if fp16_codes.shape == codes_np.shape else 0.0
                )
            rows.append(row)
            print(row, file=sys.stderr)
    return rows


def export_onnx_copy(
    source: Path, target: Path, quantize: str | None = "int8", dtype: str = "float32"
) -> None:
    import shutil

    shutil.copytree(source, target)
    import json

    config = json.loads((target / "config.json").read_text())
    config["quantize"] = quantize
    config["dtype"] = dtype
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(r: dict[str, Any], base: str, key: str) -> str:
    value = r.get(key)
    return "-" if value is None or r.get(base) is None else f"{value:.3f} ({r[base] / value:.2f})"


def report(rows: list[dict[str, Any]], command: str, threads: int) -> str:
    lines = [
        "## ONNX Runtime against PyTorch (bench/bench_onnx.py)",
        "",
        f"`{command}`; {threads} threads, fastest of the runs, all in one process (so one load).",
        "Times in seconds; x = PyTorch time / onnxruntime time (above 1: onnxruntime faster).",
        "Quality: fp32 ONNX audio error relative to PyTorch's peak; int8 and fp16 against fp32 ONNX",
        "(SNR, log-mel distance of the decoded audio); codes agreement with PyTorch's.",
        "",
        "| checkpoint | audio s | torch dec | ort dec (x) | int8 dec (x) | fp16 dec (x) | torch enc | ort enc (x) "
        "| int8 enc (x) | fp16 enc (x) | fp32 err/peak | int8 SNR dB / mel | fp16 SNR dB / mel "
        "| codes = (fp32 / int8 / fp16) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['checkpoint']).name} ({r['params_m']:.0f} M) | {r['seconds']:g} "
            f"| {r['torch_decode_s']:.3f} | {_ratio(r, 'torch_decode_s', 'ort_decode_s')} "
            f"| {_ratio(r, 'torch_decode_s', 'int8_decode_s')} | {_ratio(r, 'torch_decode_s', 'fp16_decode_s')} "
            f"| {_fmt(r.get('torch_encode_s'), '.3f')} | {_ratio(r, 'torch_encode_s', 'ort_encode_s')} "
            f"| {_ratio(r, 'torch_encode_s', 'int8_encode_s')} | {_ratio(r, 'torch_encode_s', 'fp16_encode_s')} "
            f"| {r['ort_audio_error_of_peak']:.1e} | {r['int8_snr_db']:.1f} / {r['int8_mel_distance']:.3f} "
            f"| {r['fp16_snr_db']:.1f} / {r['fp16_mel_distance']:.3f} "
            f"| {_fmt(r.get('ort_codes_agreement'), '.3f')} / {_fmt(r.get('int8_codes_agreement'), '.3f')} "
            f"/ {_fmt(r.get('fp16_codes_agreement'), '.3f')} |"
        )
    lines += [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", action="append", default=[], help="checkpoint (repeatable)")
    parser.add_argument(
        "--decoder-only", action="append", default=[], help="of the checkpoints, those timed decoding only"
    )
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for checkpoint in args.checkpoint or ["xcodec2-demo"]:
        rows += bench_checkpoint(
            checkpoint, args.audio, args.seconds, args.runs, args.threads, checkpoint in args.decoder_only
        )
    command = "python3 bench/bench_onnx.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    section = report(rows, command, args.threads)
    print(section)
    if args.output is not None:
        write_section(args.output, "bench_onnx", section)


if __name__ == "__main__":
    main()
