"""bfloat16 against float32 on a trained checkpoint (issue 13 item 5: the demo as the yardstick).

    python3 scripts/probe_demo_bf16.py [--model xcodec2-demo] AUDIO...

Per file: the share of tokens bfloat16 encoding reproduces, and the SNR of decoding the
float32 codes in bfloat16 against decoding them in float32 (so only the decoder's precision
differs). tests/test_reduced_precision.py measures the same on tiny random models.
"""

from __future__ import annotations

import argparse
import sys

import torch

import xcodec
from xcodec.audio import load_audio


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    error = (reference.double() - other.double()).pow(2).sum()
    return float(10 * torch.log10(reference.double().pow(2).sum() / error))


@torch.inference_mode()
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+")
    parser.add_argument("--model", default="xcodec2-demo")
    args = parser.parse_args(argv)
    full = xcodec.load(args.model).model.eval()
    half = xcodec.load(args.model).model.to(torch.bfloat16).eval()
    print("| audio | token agreement bf16 vs fp32 | decode SNR bf16 vs fp32 (dB) |")
    print("|---|---|---|")
    for path in args.audio:
        wave = load_audio(path, 16000).waveform[None]
        codes = full.tokenize(wave).audio_codes
        codes_half = half.tokenize(wave.to(torch.bfloat16)).audio_codes
        agreement = float((codes == codes_half).float().mean())
        audio = full.detokenize(codes).audio.float()
        audio_half = half.detokenize(codes).audio.float()
        print(f"| {path} | {agreement:.3f} | {snr_db(audio, audio_half):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
