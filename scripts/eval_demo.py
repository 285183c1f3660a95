"""Quality figures of an X-Codec2 checkpoint on real and synthetic speech (a stop-gap until ``xcodec eval``).

    python3 scripts/eval_demo.py --model xcodec2-demo ../shared/audio/speech_en.flac ... [--eval-dir /work/demo_corpus/eval]

Each file is encoded to codes and decoded back (the main job's path) and compared with the
input at 16 kHz: log-mel correlation (Pearson r of 80-band log10 mel spectrograms, window
1024, hop 256), mel distance (the training loss's 7-scale log-mel L1), STOI, PESQ-WB, and
codebook usage (distinct codes / frames, and the share of the codebook seen). With
``--eval-dir`` the held-out synthetic files are averaged into one row. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from xcodec.audio import load_audio
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.train.losses import MultiScaleMelLoss, mel_filterbank


def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """(samples,) 16 kHz -> (80, frames) log10 mel magnitudes."""
    window = torch.hann_window(1024)
    spec = torch.stft(audio, 1024, 256, window=window, return_complex=True).abs()
    mel = mel_filterbank(1024, 80, 16000).float().T @ spec
    return torch.log10(mel.clamp_min(1e-5))


def log_mel_correlation(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    a, b = log_mel(reference).flatten(), log_mel(decoded).flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@torch.no_grad()
def reconstruct(model: Xcodec2Model, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples,) -> decoded (samples,), codes (frames,)."""
    hop = model.hop_length
    padded = torch.nn.functional.pad(audio, (0, -audio.numel() % hop))
    codes = model.encode(padded[None, None]).audio_codes
    decoded = model.decode(audio_codes=codes).audio_values[0, 0, : audio.numel()]
    return decoded, codes.flatten()


def figures(model: Xcodec2Model, audio: torch.Tensor, mel_loss: MultiScaleMelLoss) -> dict[str, float]:
    from pesq import pesq
    from pystoi import stoi

    decoded, codes = reconstruct(model, audio)
    ref, out = audio.numpy(), decoded.numpy()
    try:
        pesq_wb = float(pesq(16000, ref, out, "wb"))
    except Exception:  # PESQ refuses some inputs (no utterance found): report nan
        pesq_wb = float("nan")
    codebook = int(np.prod(model.config.quantization_levels))
    return {
        "logmel_r": log_mel_correlation(audio, decoded),
        "mel_dist": float(mel_loss(decoded[None], audio[None])),
        "stoi": float(stoi(ref, out, 16000, extended=False)),
        "pesq_wb": pesq_wb,
        "distinct_codes_per_frame": len(set(codes.tolist())) / codes.numel(),
        "codebook_share": len(set(codes.tolist())) / codebook,
    }


def _load(path: Path) -> torch.Tensor:
    return torch.as_tensor(load_audio(path, 16000).waveform).float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--model", default="xcodec2-demo")
    parser.add_argument("--eval-dir", type=Path, default=None)
    parser.add_argument("--max-eval-files", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = Xcodec2Model.from_pretrained(args.model)
    mel_loss = MultiScaleMelLoss()
    rows: list[tuple[str, dict[str, float]]] = []
    for path in args.files:
        rows.append((path.name, figures(model, _load(path), mel_loss)))
    if args.eval_dir is not None:
        files = sorted(args.eval_dir.glob("*.wav"))[: args.max_eval_files]
        per = []
        for path in files:
            per.append(figures(model, _load(path), mel_loss))
        mean = {key: float(np.nanmean([p[key] for p in per])) for key in per[0]}
        rows.append((f"synthetic eval split ({len(files)} files, mean)", mean))
    keys = list(rows[0][1])
    print("| audio | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, values in rows:
        print(f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
