"""Quality metrics of decoded audio and of tokens, usable on their own.

Waveform arguments are ``(samples,)`` numpy arrays or torch tensors; a reference and an
estimate are cut to the shorter length first (:func:`align`). Signatures are
``metric(reference, estimate[, sample_rate])`` with the reference first.

- :mod:`~xcodec.metrics.signal`: :func:`snr_db`, :func:`si_sdr`.
- :mod:`~xcodec.metrics.spectral`: :func:`mel_distance`, :func:`mel_correlation`,
  :func:`multi_resolution_stft_distance`, :func:`log_mel`.
- :mod:`~xcodec.metrics.perceptual` (the ``eval`` extra): :func:`stoi`, :func:`pesq_wb`,
  :func:`pesq_nb`, :func:`dnsmos`.
- :mod:`~xcodec.metrics.intelligibility` (the ``asr`` extra): :func:`asr_wer`,
  :func:`transcribe`, :func:`word_error_rate`.
- :mod:`~xcodec.metrics.codes`: :func:`codebook_usage`, :func:`token_agreement`.
"""

from xcodec.metrics.codes import CodebookUsage, codebook_usage, token_agreement
from xcodec.metrics.intelligibility import asr_wer, check_asr_available, transcribe, word_error_rate
from xcodec.metrics.perceptual import DnsmosScores, check_available, dnsmos, pesq_nb, pesq_wb, stoi
from xcodec.metrics.signal import align, si_sdr, snr_db
from xcodec.metrics.spectral import (
    MEL_CONFIG,
    STFT_RESOLUTIONS,
    MelConfig,
    log_mel,
    mel_correlation,
    mel_distance,
    multi_resolution_stft_distance,
)

__all__ = [
    "MEL_CONFIG",
    "STFT_RESOLUTIONS",
    "CodebookUsage",
    "DnsmosScores",
    "MelConfig",
    "align",
    "asr_wer",
    "check_asr_available",
    "check_available",
    "codebook_usage",
    "dnsmos",
    "log_mel",
    "mel_correlation",
    "mel_distance",
    "multi_resolution_stft_distance",
    "pesq_nb",
    "pesq_wb",
    "si_sdr",
    "snr_db",
    "stoi",
    "token_agreement",
    "transcribe",
    "word_error_rate",
]
