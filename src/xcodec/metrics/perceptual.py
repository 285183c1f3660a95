"""Perceptual metrics from optional libraries: STOI (pystoi), PESQ (pesq), DNSMOS (onnxruntime).

Each library is imported when its metric is first called, so the rest of
:mod:`xcodec.metrics` works without them; a missing one raises
:class:`~xcodec.errors.XcodecError` naming ``pip install "xcodec[eval]"``.

Rates: STOI is computed on 16 kHz audio (pystoi resamples to its own 10 kHz inside);
PESQ wide-band at 16 kHz and narrow-band at 8 kHz (the only rates ITU-T P.862 defines);
DNSMOS at 16 kHz (its models' rate). Inputs at other rates are resampled with
:func:`xcodec.audio.resample` first.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from xcodec.audio import resample
from xcodec.errors import XcodecError
from xcodec.metrics.signal import align, as_mono_float64

__all__ = ["DnsmosScores", "check_available", "dnsmos", "pesq_nb", "pesq_wb", "require", "stoi"]

EVAL_EXTRA = 'pip install "xcodec[eval]"'
PERCEPTUAL_RATE = 16000

# DNSMOS P.835 (Reddy et al., 2022): 9.01 s windows, one per second, and the cubic maps
# from the model's raw outputs to MOS; the constants of Microsoft's dnsmos_local.py,
# which speechmos uses too (a test checks our numbers equal speechmos.dnsmos.run).
_DNSMOS_WINDOW_SECONDS = 9.01
_DNSMOS_POLY_SIG = (-0.08397278, 1.22083953, 0.0052439)
_DNSMOS_POLY_BAK = (-0.13166888, 1.60915514, -0.39604546)
_DNSMOS_POLY_OVRL = (-0.06766283, 1.11546468, 0.04602535)


def require(module: str) -> Any:
    """Import an optional module of the ``eval`` extra, or raise an XcodecError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise XcodecError(f"this metric needs {module!r}, which is not installed: {EVAL_EXTRA}") from exc


def check_available() -> None:
    """Raise an XcodecError naming the ``eval`` extra if any library these metrics use is missing.

    Uses ``find_spec`` (no import): speechmos's modules import librosa, which only its
    P.808 model needs; we read its bundled ONNX files and import nothing from it.
    """
    for module in ("pystoi", "pesq", "onnxruntime", "speechmos"):
        if importlib.util.find_spec(module) is None:
            raise XcodecError(f"perceptual metrics need {module!r}, which is not installed: {EVAL_EXTRA}")


def _at_rate(audio: Any, sample_rate: int, target: int, name: str) -> np.ndarray:
    array = as_mono_float64(audio, name)
    return np.asarray(resample(array, sample_rate, target), dtype=np.float64)


def stoi(reference: Any, estimate: Any, sample_rate: int, *, extended: bool = False) -> float:
    """Short-time objective intelligibility (0..1; ESTOI with ``extended=True``), via ``pystoi.stoi``.

    reference, estimate: ``(samples,)`` at ``sample_rate``, aligned by cutting to the
    shorter; both are resampled to 16 kHz first.
    """
    pystoi = require("pystoi")
    ref, est = align(reference, estimate)
    ref16 = _at_rate(ref, sample_rate, PERCEPTUAL_RATE, "reference")
    est16 = _at_rate(est, sample_rate, PERCEPTUAL_RATE, "estimate")
    return float(pystoi.stoi(ref16, est16, PERCEPTUAL_RATE, extended=extended))


def _pesq(reference: Any, estimate: Any, sample_rate: int, rate: int, mode: str) -> float:
    pesq = require("pesq")
    ref, est = align(reference, estimate)
    ref_r = _at_rate(ref, sample_rate, rate, "reference")
    est_r = _at_rate(est, sample_rate, rate, "estimate")
    try:
        return float(pesq.pesq(rate, ref_r, est_r, mode))
    except pesq.PesqError:
        # No speech found in the reference (silence, noise): PESQ is undefined there.
        return float("nan")


def pesq_wb(reference: Any, estimate: Any, sample_rate: int) -> float:
    """Wide-band PESQ MOS-LQO (P.862.2; about 1.0..4.64) at 16 kHz via ``pesq.pesq``; NaN without speech."""
    return _pesq(reference, estimate, sample_rate, 16000, "wb")


def pesq_nb(reference: Any, estimate: Any, sample_rate: int) -> float:
    """Narrow-band PESQ MOS-LQO (P.862.1; about 1.0..4.55) at 8 kHz via ``pesq.pesq``; NaN without speech."""
    return _pesq(reference, estimate, sample_rate, 8000, "nb")


@dataclasses.dataclass(frozen=True)
class DnsmosScores:
    """DNSMOS P.835 scores (1..5): speech signal quality, background noise, overall."""

    sig: float
    bak: float
    ovrl: float


def _dnsmos_model_path() -> Path:
    spec = importlib.util.find_spec("speechmos")
    if spec is None or spec.origin is None:
        raise XcodecError(
            f"DNSMOS uses the ONNX models bundled in 'speechmos', which is not installed: {EVAL_EXTRA}"
        )
    path = Path(spec.origin).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
    if not path.is_file():
        raise XcodecError(f"{path}: the DNSMOS model is missing from the speechmos install")
    return path


@functools.lru_cache(maxsize=1)
def _dnsmos_session() -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    # onnxruntime's idle worker threads otherwise busy-wait after each run, taking CPU
    # from the codec's torch threads that run next in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(_dnsmos_model_path()), options, providers=["CPUExecutionProvider"])


def dnsmos(audio: Any, sample_rate: int) -> DnsmosScores:
    """DNSMOS P.835 SIG/BAK/OVRL of one ``(samples,)`` waveform (no reference needed).

    Runs the ``sig_bak_ovr.onnx`` model bundled with ``speechmos`` through onnxruntime
    the way ``speechmos.dnsmos.run`` does: 16 kHz, clips under 9.01 s repeated (doubled
    until long enough), one 9.01 s window per second, raw scores mapped by the P.835
    polynomials and averaged over windows. Samples beyond +-1 are clipped (speechmos
    refuses them).
    """
    session = _dnsmos_session()
    wave = np.clip(_at_rate(audio, sample_rate, PERCEPTUAL_RATE, "audio"), -1.0, 1.0).astype(np.float32)
    window = int(_DNSMOS_WINDOW_SECONDS * PERCEPTUAL_RATE)
    while wave.size < window:
        wave = np.append(wave, wave)
    num_windows = int(np.floor(wave.size / PERCEPTUAL_RATE) - _DNSMOS_WINDOW_SECONDS) + 1
    raw = []
    for index in range(num_windows):
        start = index * PERCEPTUAL_RATE
        segment = wave[start : int(start + _DNSMOS_WINDOW_SECONDS * PERCEPTUAL_RATE)]
        if segment.size < window:
            continue
        raw.append(session.run(None, {"input_1": segment[np.newaxis, :]})[0][0])
    sig, bak, ovrl = (np.array([r[i] for r in raw], dtype=np.float64) for i in range(3))
    return DnsmosScores(
        sig=float(np.mean(np.poly1d(_DNSMOS_POLY_SIG)(sig))),
        bak=float(np.mean(np.poly1d(_DNSMOS_POLY_BAK)(bak))),
        ovrl=float(np.mean(np.poly1d(_DNSMOS_POLY_OVRL)(ovrl))),
    )
