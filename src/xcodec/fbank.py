"""Kaldi-compatible log-mel filterbank in plain torch: the math of X-Codec2's semantic features.

The filterbank is computed for the whole batch at once (``unfold`` + ``rfft``) on whatever
device the audio is on. It follows ``torchaudio.compliance.kaldi.fbank`` step by step (same
operations in the same order, float32), because the reference calls that. No I/O, no
padding rules: those are :mod:`xcodec.features`' extractors.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from xcodec.errors import ArgumentError, AudioError

__all__ = [
    "KALDI_WAVEFORM_SCALE",
    "LOG_FLOOR",
    "MEL_LOW_FREQUENCY",
    "POVEY_EXPONENT",
    "PREEMPHASIS_COEFFICIENT",
    "kaldi_fbank",
    "kaldi_mel_banks",
]

# Kaldi filterbank options the X-Codec2 reference passes to torchaudio's ``kaldi.fbank``.
# Kaldi works on 16-bit integer sample values, so [-1, 1] audio is scaled by 2**15 first.
KALDI_WAVEFORM_SCALE = 2.0**15
PREEMPHASIS_COEFFICIENT = 0.97
# Lowest mel edge in Hz (Kaldi's default ``low_freq``); the highest is the Nyquist rate.
MEL_LOW_FREQUENCY = 20.0
# Kaldi's povey window: a Hann window raised to this power (it reaches zero at both ends).
POVEY_EXPONENT = 0.85
# Mel energies are floored at float32 machine epsilon before the log, as Kaldi does.
LOG_FLOOR = float(torch.finfo(torch.float32).eps)


def _mel_scale(frequency: Any) -> Any:
    """Kaldi's (natural-log) mel scale, for floats and tensors alike."""
    if isinstance(frequency, torch.Tensor):
        return 1127.0 * (1.0 + frequency / 700.0).log()
    return 1127.0 * math.log(1.0 + frequency / 700.0)


@lru_cache(maxsize=8)
def _mel_banks_cpu(
    num_mel_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    nyquist = 0.5 * sample_rate
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ArgumentError(f"mel range {low_freq}..{high_freq} Hz does not fit below Nyquist {nyquist} Hz")
    mel_low, mel_high = _mel_scale(low_freq), _mel_scale(high_freq)
    # num_mel_bins + 1 steps: the outer triangles reach one step past the end centres.
    mel_step = (mel_high - mel_low) / (num_mel_bins + 1)
    # Float32 on the CPU with the arithmetic of torchaudio's get_mel_banks, so the table is
    # bit-identical to the one the reference multiplies by.
    bin_index = torch.arange(num_mel_bins).unsqueeze(1)
    left = mel_low + bin_index * mel_step
    centre = mel_low + (bin_index + 1.0) * mel_step
    right = mel_low + (bin_index + 2.0) * mel_step
    fft_mel = _mel_scale(sample_rate / fft_size * torch.arange(fft_size / 2)).unsqueeze(0)
    rising = (fft_mel - left) / (centre - left)
    falling = (right - fft_mel) / (right - centre)
    banks = torch.max(torch.zeros(1), torch.min(rising, falling))
    # Kaldi leaves the Nyquist bin out of every triangle.
    return F.pad(banks, (0, 1))


def kaldi_mel_banks(
    num_mel_bins: int,
    fft_size: int,
    sample_rate: float,
    low_freq: float = MEL_LOW_FREQUENCY,
    high_freq: float | None = None,
) -> torch.Tensor:
    """Kaldi's triangular mel filters, linear in mel, unnormalised.

    Returns ``(num_mel_bins, fft_size // 2 + 1)`` float32 on the CPU; the last (Nyquist)
    column is zero. ``high_freq=None`` means the Nyquist rate.
    """
    high = 0.5 * sample_rate if high_freq is None else float(high_freq)
    return _mel_banks_cpu(num_mel_bins, fft_size, float(sample_rate), float(low_freq), high).clone()


@lru_cache(maxsize=8)
def _povey_window_cpu(frame_length: int) -> torch.Tensor:
    return torch.hann_window(frame_length, periodic=False).pow(POVEY_EXPONENT)


def kaldi_fbank(
    waveforms: torch.Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 80,
    frame_length: int = 400,
    frame_shift: int = 160,
    low_freq: float = MEL_LOW_FREQUENCY,
    high_freq: float | None = None,
    preemphasis: float = PREEMPHASIS_COEFFICIENT,
) -> torch.Tensor:
    """Kaldi log-mel filterbank of a batch, as ``kaldi.fbank`` with dither 0 and no energy.

    waveforms: (batch, samples) float, in the units Kaldi expects (scale [-1, 1] audio by
        ``KALDI_WAVEFORM_SCALE`` first).
    Returns (batch, frames, num_mel_bins) in the waveforms' dtype and device, with
    ``frames = 1 + (samples - frame_length) // frame_shift`` (Kaldi's ``snip_edges``).

    Per frame: remove the DC offset, pre-emphasise (the first sample against itself), apply
    the povey window, zero-pad to the next power of two, take the power spectrum, apply the
    mel filters and the log (floored at float32 epsilon).
    """
    batch, num_samples = waveforms.shape
    if num_samples < frame_length:
        raise AudioError(f"{num_samples} samples is shorter than one {frame_length}-sample analysis frame")
    device, dtype = waveforms.device, waveforms.dtype
    frames = waveforms.unfold(-1, frame_length, frame_shift)  # (batch, frames, frame_length)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - preemphasis * previous
    frames = frames * _povey_window_cpu(frame_length).to(device=device, dtype=dtype)
    fft_size = 1 << (frame_length - 1).bit_length()
    power = torch.fft.rfft(frames, n=fft_size).abs().pow(2.0)  # (batch, frames, fft_size // 2 + 1)
    banks = kaldi_mel_banks(num_mel_bins, fft_size, sample_rate, low_freq, high_freq).to(device, dtype)
    num_frames = frames.shape[1]
    mel = torch.mm(power.reshape(batch * num_frames, -1), banks.T).reshape(batch, num_frames, num_mel_bins)
    return mel.clamp_min(LOG_FLOOR).log()
