"""Spectral distances: log-mel L1, log-mel correlation and multi-resolution STFT distance.

The mel configuration (:data:`MEL_CONFIG`) is the one vocoder papers report "mel
distance" with (HiFi-GAN, Vocos): 1024-point FFT, hop 256, Hann window, 80 Slaney mel
bands from 0 Hz to Nyquist with Slaney area normalisation (``librosa.filters.mel``'s
defaults), magnitude (not power) spectrogram, natural log clamped at 1e-5.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xcodec.metrics.signal import align

__all__ = [
    "MEL_CONFIG",
    "STFT_RESOLUTIONS",
    "MelConfig",
    "log_mel",
    "mel_correlation",
    "mel_distance",
    "mel_filterbank",
    "multi_resolution_stft_distance",
]


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """How :func:`log_mel` turns a waveform into a log-mel matrix."""

    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    log_floor: float = 1e-5


MEL_CONFIG = MelConfig()

# (n_fft, hop, window) triples of the multi-resolution STFT distance (Parallel WaveGAN's).
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    # Slaney's Auditory Toolbox scale: linear below 1 kHz (3 mels per 200 Hz), log above.
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, math.log(6.4) / 27.0
    freq = np.asarray(freq, dtype=np.float64)
    linear = 3.0 * freq / 200.0
    log = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log, linear)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, math.log(6.4) / 27.0
    linear = 200.0 * mels / 3.0
    log = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return np.where(mels >= min_log_mel, log, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` float64 Slaney-scale triangles with Slaney area norm.

    The same filters as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)``
    (its defaults: ``htk=False``, ``norm="slaney"``); a test pins that.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    hz_edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_mels + 2))
    widths = np.diff(hz_edges)  # (n_mels + 1,)
    ramps = hz_edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper))
    return filters * (2.0 / (hz_edges[2 : n_mels + 2] - hz_edges[:n_mels]))[:, None]


def _magnitude(waveform: np.ndarray, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """``(freqs, frames)`` float64 STFT magnitude, centred frames with reflect padding."""
    signal = torch.from_numpy(waveform)
    if signal.numel() <= n_fft // 2:
        # Reflect padding needs more samples than half a frame; zero-pad short clips.
        signal = torch.nn.functional.pad(signal, (0, n_fft // 2 + 1 - signal.numel()))
    window = torch.hann_window(win, dtype=torch.float64)
    spec = torch.stft(signal, n_fft, hop, win, window, center=True, pad_mode="reflect", return_complex=True)
    return spec.abs()


def log_mel(waveform: Any, sample_rate: int, config: MelConfig = MEL_CONFIG) -> np.ndarray:
    """``(n_mels, frames)`` float64 log-mel matrix of a ``(samples,)`` waveform (see :class:`MelConfig`)."""
    from xcodec.metrics.signal import as_mono_float64

    audio = as_mono_float64(waveform)
    magnitude = _magnitude(audio, config.n_fft, config.hop_length, config.n_fft).numpy()
    filters = mel_filterbank(sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)
    return np.log(np.maximum(filters @ magnitude, config.log_floor))


def mel_distance(reference: Any, estimate: Any, sample_rate: int, config: MelConfig = MEL_CONFIG) -> float:
    """Mean absolute difference of the two log-mel matrices (after :func:`~xcodec.metrics.align`).

    0 for identical audio; in natural-log units (1.0 = a factor e in mel magnitude).
    """
    ref, est = align(reference, estimate)
    return float(np.mean(np.abs(log_mel(ref, sample_rate, config) - log_mel(est, sample_rate, config))))


def mel_correlation(reference: Any, estimate: Any, sample_rate: int, config: MelConfig = MEL_CONFIG) -> float:
    """Pearson correlation over all entries of the two log-mel matrices (1 for identical audio).

    Insensitive to a gain change (a constant log offset) and to phase; 0 if either matrix
    is constant (silence).
    """
    ref, est = align(reference, estimate)
    a = log_mel(ref, sample_rate, config).ravel()
    b = log_mel(est, sample_rate, config).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / denominator if denominator > 0 else 0.0


def multi_resolution_stft_distance(
    reference: Any,
    estimate: Any,
    resolutions: Sequence[tuple[int, int, int]] = STFT_RESOLUTIONS,
) -> float:
    """Multi-resolution STFT distance (Parallel WaveGAN's loss, Yamamoto et al., 2020), averaged over resolutions.

    Per resolution ``(n_fft, hop, window)``: spectral convergence
    ``||S_ref - S_est||_F / ||S_ref||_F`` plus log-magnitude L1
    ``mean |log S_ref - log S_est|`` (magnitudes clamped at 1e-7). 0 for identical audio.
    """
    ref, est = align(reference, estimate)
    total = 0.0
    for n_fft, hop, win in resolutions:
        s_ref = _magnitude(ref, n_fft, hop, win).clamp(min=1e-7)
        s_est = _magnitude(est, n_fft, hop, win).clamp(min=1e-7)
        convergence = float(torch.linalg.norm(s_ref - s_est) / torch.linalg.norm(s_ref))
        log_l1 = float(torch.mean(torch.abs(torch.log(s_ref) - torch.log(s_est))))
        total += convergence + log_l1
    return total / len(resolutions)
