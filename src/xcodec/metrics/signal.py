"""Waveform metrics: alignment, SNR and SI-SDR.

Inputs are 1-D waveforms (numpy arrays or torch tensors, ``(samples,)``); everything is
computed in float64 so that the float32 audio a codec returns is not the limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xcodec.errors import ArgumentError

__all__ = ["align", "as_mono_float64", "si_sdr", "snr_db"]

# Keeps the ratios finite for identical or silent signals: an exact copy scores about
# 10 * log10(1 / 1e-20) = 200 dB rather than +inf (JSON has no infinity).
_EPS = 1e-20


def as_mono_float64(audio: Any, name: str = "audio") -> np.ndarray:
    """``(samples,)`` float64 numpy copy of a 1-D numpy array or torch tensor."""
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    array = np.asarray(audio, dtype=np.float64)
    if array.ndim != 1:
        raise ArgumentError(f"{name}: expected a 1-D waveform (samples,), got shape {array.shape}")
    if array.size == 0:
        raise ArgumentError(f"{name}: the waveform holds no samples")
    if not np.isfinite(array).all():
        raise ArgumentError(f"{name}: the waveform holds NaN or Inf")
    return array


def align(reference: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both waveforms cut to the shorter one's length, as float64 ``(samples,)`` arrays.

    Codecs pad their input to whole frames, so the decoded audio is usually a little
    longer than the input; the samples they share start at 0 (no delay to undo).
    """
    ref = as_mono_float64(reference, "reference")
    est = as_mono_float64(estimate, "estimate")
    length = min(ref.size, est.size)
    return ref[:length], est[:length]


def snr_db(reference: Any, estimate: Any) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum ref^2 / sum (ref - est)^2)``, after :func:`align`."""
    ref, est = align(reference, estimate)
    signal = float(np.sum(ref**2))
    noise = float(np.sum((ref - est) ** 2))
    return 10.0 * float(np.log10((signal + _EPS) / (noise + _EPS)))


def si_sdr(reference: Any, estimate: Any) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), after :func:`align`.

    Both signals are made zero-mean; the reference is scaled by the projection
    ``alpha = <est, ref> / <ref, ref>`` and the score is ``10 log10(|alpha ref|^2 / |est - alpha ref|^2)``,
    so a louder or quieter copy scores as well as the original.
    """
    ref, est = align(reference, estimate)
    ref = ref - ref.mean()
    est = est - est.mean()
    alpha = float(np.dot(est, ref)) / (float(np.dot(ref, ref)) + _EPS)
    target = alpha * ref
    noise = est - target
    return 10.0 * float(np.log10((float(np.sum(target**2)) + _EPS) / (float(np.sum(noise**2)) + _EPS)))
