"""Intelligibility by speech recognition: the word error rate of a decoded file (the ``asr`` extra).

STOI says how much of the input's short-time envelope survives; it does not say whether a
listener (or a recogniser) still hears the same words. :func:`asr_wer` transcribes the
input and the decoded audio with the same offline recogniser and scores the second
against the first, so the recogniser's own mistakes on the input do not count against
the codec. The recogniser is CMU PocketSphinx (``pip install pocketsphinx``: its wheel
carries a US-English acoustic model, dictionary and language model, so it runs without
a network). It is English only and far from state of the art: use it to compare codecs
and checkpoints on the same English files, not as an absolute figure.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Any

import numpy as np

from xcodec.audio import resample
from xcodec.errors import XcodecError
from xcodec.metrics.signal import align, as_mono_float64

__all__ = ["ASR_EXTRA", "asr_wer", "check_asr_available", "transcribe", "word_error_rate"]

ASR_EXTRA = 'pip install "xcodec[asr]"'
_ASR_RATE = 16000  # the bundled acoustic model's rate


def _pocketsphinx() -> Any:
    try:
        return importlib.import_module("pocketsphinx")
    except ImportError as exc:
        raise XcodecError(
            f"speech recognition needs 'pocketsphinx', which is not installed: {ASR_EXTRA}"
        ) from exc


def check_asr_available() -> None:
    """Raise an XcodecError naming the ``asr`` extra if pocketsphinx is missing (no import)."""
    if importlib.util.find_spec("pocketsphinx") is None:
        raise XcodecError(f"speech recognition needs 'pocketsphinx', which is not installed: {ASR_EXTRA}")


@functools.lru_cache(maxsize=1)
def _decoder() -> Any:
    # Building the decoder reads ~30 MB of model files: once per process.
    return _pocketsphinx().Decoder(samprate=_ASR_RATE, loglevel="FATAL")


def transcribe(audio: Any, sample_rate: int) -> str:
    """The recogniser's lower-case words for one ``(samples,)`` waveform ("" when it hears none).

    The audio is resampled to 16 kHz, clipped to +-1 and given to the recogniser as
    16-bit PCM in one utterance.
    """
    wave = as_mono_float64(audio, "audio")
    if sample_rate != _ASR_RATE:
        wave = np.asarray(resample(wave, sample_rate, _ASR_RATE), dtype=np.float64)
    pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return "" if hypothesis is None else " ".join(hypothesis.hypstr.lower().split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by word-level edit distance.

    0 for an exact match; can exceed 1 when the hypothesis inserts many words. NaN when
    the reference has no words (the rate is undefined).
    """
    ref = reference.lower().split()
    hyp = hypothesis.lower().split()
    if not ref:
        return float("nan")
    # One row of the Levenshtein table at a time: previous[j] = distance(ref[:i-1], hyp[:j]).
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, other in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return previous[-1] / len(ref)


def asr_wer(reference: Any, estimate: Any, sample_rate: int) -> float:
    """Word error rate of the recogniser on ``estimate`` against its own transcript of ``reference``.

    reference, estimate: ``(samples,)`` at ``sample_rate``, cut to the shorter first. NaN
    when the recogniser hears no words in the reference (silence, music).
    """
    ref, est = align(reference, estimate)
    return word_error_rate(transcribe(ref, sample_rate), transcribe(est, sample_rate))
