"""Audio in and out: read, write, resample, mix to mono (no model code here).

Files are read with libsndfile (through ``soundfile``): WAV (16/24/32-bit integer and
32/64-bit float), FLAC, OGG/Vorbis, and whatever else the installed libsndfile reads.
Integer PCM comes back scaled to [-1, 1); float files come back as stored.

Resampling uses soxr. The default quality is ``"HQ"``, the setting ``librosa.load`` uses
(``res_type="soxr_hq"``), so audio prepared here matches audio prepared the usual
Transformers/datasets way; ``"VHQ"`` is available for a steeper filter. Channels are mixed
to mono by averaging *before* resampling, in float32, again as ``librosa.load`` does.

Every error is an :class:`~xcodec.errors.AudioError` whose message names the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from xcodec.errors import AudioError

__all__ = [
    "DEFAULT_RESAMPLE_QUALITY",
    "LoadedAudio",
    "as_waveform",
    "load_audio",
    "resample",
    "save_audio",
    "to_mono",
]

ResampleQuality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
DEFAULT_RESAMPLE_QUALITY: ResampleQuality = "HQ"

# Full-scale value of each integer PCM dtype: samples are divided by it to land in [-1, 1).
_INTEGER_FULL_SCALE = {
    np.dtype(np.int8): 2.0**7,
    np.dtype(np.int16): 2.0**15,
    np.dtype(np.int32): 2.0**31,
    np.dtype(np.int64): 2.0**63,
}

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclasses.dataclass(frozen=True)
class LoadedAudio:
    """A waveform and where it came from.

    waveform: (samples,) float32 when mono (the default), else (channels, samples).
    sample_rate: rate of ``waveform`` in Hz (the target rate when one was asked for).
    original_sample_rate: rate of the source before any resampling.
    num_channels: channels in the source.
    path: the file read, or None for in-memory audio (:func:`as_waveform`).
    mixed_down: True when several channels were averaged into one (a CLI may say so).
    """

    waveform: torch.Tensor
    sample_rate: int
    original_sample_rate: int
    num_channels: int
    path: Path | None = None
    mixed_down: bool = False

    @property
    def num_samples(self) -> int:
        return int(self.waveform.shape[-1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


def _source_name(path: Path | None) -> str:
    return str(path) if path is not None else "audio"


def _check_finite(waveform: np.ndarray, source: str) -> None:
    if not np.isfinite(waveform).all():
        raise AudioError(f"{source} contains NaN or infinite samples")


# libsndfile reads a file cut short as far as its data goes and only says so in its log:
# "data : <declared> (should be <present>)" for RIFF-style headers, and an unexpected end
# for Ogg. Streaming writers leave 0 or 0xFFFFFFFF as the declared size; those are not cuts.
_DATA_SIZE_NOTE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_PLACEHOLDER = 0xFFFFFF00


def _truncation_note(log: str) -> str | None:
    match = _DATA_SIZE_NOTE.search(log)
    if match is not None:
        declared, present = int(match.group(1)), int(match.group(2))
        if present < declared < _STREAMING_PLACEHOLDER:
            return f"the header declares {declared} bytes of audio data, the file holds {present}"
    if "ended unexpectedly" in log:
        return "the stream ends before its end-of-stream mark"
    return None


def load_audio(
    path: str | os.PathLike[str],
    target_sample_rate: int | None = None,
    *,
    mono: bool = True,
    quality: ResampleQuality = DEFAULT_RESAMPLE_QUALITY,
) -> LoadedAudio:
    """Read an audio file as float32, mixed to mono and resampled on request.

    path: any file libsndfile reads (wav, flac, ogg, ...).
    target_sample_rate: resample to this rate (soxr, ``quality``); None keeps the file's.
    mono: average all channels into one, giving ``waveform`` of shape (samples,);
        False keeps (channels, samples).

    Raises AudioError, naming the file, when it is missing, not audio, truncated or
    corrupt, holds no samples, or holds NaN/Inf. Float files with samples beyond +-1 are
    kept as they are, with a warning naming the file.
    """
    import soundfile as sf

    file = Path(path).expanduser()
    if not file.exists():
        raise AudioError(f"{file}: no such file")
    if not file.is_file():
        raise AudioError(f"{file}: not a file")
    if file.stat().st_size == 0:
        raise AudioError(f"{file}: the file is empty (0 bytes)")
    try:
        info = sf.info(str(file))
        data, rate = sf.read(str(file), dtype="float32", always_2d=True)  # (samples, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{file}: cannot read as audio ({exc})") from exc
    num_samples, num_channels = data.shape
    truncation = _truncation_note(info.extra_info)
    if truncation is not None:
        raise AudioError(f"{file}: truncated or corrupt ({truncation})")
    if num_samples == 0:
        raise AudioError(f"{file}: holds no audio samples")
    _check_finite(data, str(file))
    peak = float(np.abs(data).max())
    if peak > 1.0:
        warnings.warn(
            f"{file}: samples reach {peak:.3f}, beyond the [-1, 1] range; they are kept as they are",
            stacklevel=2,
        )
    channels_first = np.ascontiguousarray(data.T)  # (channels, samples)
    waveform = channels_first.mean(axis=0) if mono else channels_first
    if target_sample_rate is not None and target_sample_rate != rate:
        waveform = resample(waveform, int(rate), int(target_sample_rate), quality=quality)
    return LoadedAudio(
        waveform=torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)),
        sample_rate=int(target_sample_rate or rate),
        original_sample_rate=int(rate),
        num_channels=num_channels,
        path=file,
        mixed_down=mono and num_channels > 1,
    )


def resample(
    waveform: ArrayT,
    orig_sample_rate: int,
    target_sample_rate: int,
    *,
    quality: ResampleQuality = DEFAULT_RESAMPLE_QUALITY,
) -> ArrayT:
    """Resample along the last axis with soxr.

    waveform: (samples,) or (channels, samples), numpy or torch (returned as the same kind,
        dtype and device; soxr runs on the CPU in float32, or float64 for float64 input).
    """
    import soxr

    if orig_sample_rate <= 0 or target_sample_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {orig_sample_rate} -> {target_sample_rate}")
    array = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if array.ndim not in (1, 2):
        raise AudioError(f"expected (samples,) or (channels, samples), got shape {array.shape}")
    if orig_sample_rate == target_sample_rate:
        return waveform
    work_dtype = np.float64 if array.dtype == np.float64 else np.float32
    # soxr wants (samples, channels).
    resampled = soxr.resample(
        np.ascontiguousarray(array.T, dtype=work_dtype), orig_sample_rate, target_sample_rate, quality=quality
    ).T
    if isinstance(waveform, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(resampled)).to(
            device=waveform.device, dtype=waveform.dtype
        )
    return np.ascontiguousarray(resampled, dtype=array.dtype if array.dtype.kind == "f" else work_dtype)


def to_mono(waveform: ArrayT) -> ArrayT:
    """Average the channels of a (channels, samples) waveform into (samples,).

    A 1-D waveform is returned unchanged.
    """
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise AudioError(f"expected (samples,) or (channels, samples), got shape {tuple(waveform.shape)}")
    if isinstance(waveform, torch.Tensor):
        return waveform.mean(dim=0)
    return waveform.mean(axis=0)


def _to_float32_numpy(audio: Any, source: str) -> np.ndarray:
    """Any numeric array or tensor -> float32 numpy, integer PCM scaled to [-1, 1)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        if audio.dtype == torch.bfloat16:
            audio = audio.float()
        array = audio.numpy()
    else:
        array = np.asarray(audio)
    if array.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if array.dtype in _INTEGER_FULL_SCALE:
        return (array.astype(np.float64) / _INTEGER_FULL_SCALE[array.dtype]).astype(np.float32)
    if array.dtype.kind != "f":
        raise AudioError(f"{source} has dtype {array.dtype}; expected float or integer PCM samples")
    return array.astype(np.float32)


def as_waveform(
    audio: Any,
    sampling_rate: int,
    target_sample_rate: int | None = None,
    *,
    quality: ResampleQuality = DEFAULT_RESAMPLE_QUALITY,
) -> LoadedAudio:
    """In-memory audio -> a mono float32 :class:`LoadedAudio` at ``target_sample_rate``.

    audio: numpy array or torch tensor, (samples,) or channels-first (channels, samples);
        float (kept as is) or integer PCM (int8/16/32/64 scaled by full scale, uint8
        centred on 128).
    sampling_rate: the rate of ``audio``; target_sample_rate None keeps it.
    ``path`` of the result is None and ``mixed_down`` says whether channels were averaged.
    """
    array = _to_float32_numpy(audio, "audio")
    if array.ndim == 2 and array.shape[0] > array.shape[1]:
        raise AudioError(
            f"audio of shape {array.shape} looks like (samples, channels); pass it channels-first, "
            "(channels, samples), e.g. with .T"
        )
    if array.ndim not in (1, 2):
        raise AudioError(f"expected (samples,) or (channels, samples), got shape {array.shape}")
    if array.shape[-1] == 0:
        raise AudioError("audio is empty (0 samples)")
    _check_finite(array, "audio")
    num_channels = 1 if array.ndim == 1 else array.shape[0]
    mono = to_mono(array)
    if target_sample_rate is not None and target_sample_rate != sampling_rate:
        mono = resample(mono, sampling_rate, target_sample_rate, quality=quality)
    return LoadedAudio(
        waveform=torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)),
        sample_rate=int(target_sample_rate or sampling_rate),
        original_sample_rate=int(sampling_rate),
        num_channels=num_channels,
        path=None,
        mixed_down=num_channels > 1,
    )


# Formats whose integer subtypes we default to 16-bit PCM; others use libsndfile's default.
_PCM16_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"}


def save_audio(
    path: str | os.PathLike[str],
    waveform: Any,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write a waveform to ``path``; the format follows the extension (.wav, .flac, .ogg, ...).

    waveform: (samples,) or (channels, samples), float in [-1, 1], numpy or torch.
    subtype: libsndfile subtype. None means ``"PCM_16"`` for WAV/FLAC/AIFF-like formats
        (the usual listening format) and the format's own default otherwise (Vorbis for
        .ogg). Pass ``"FLOAT"`` to keep float32 samples bit-exact in a WAV.
    Integer subtypes cannot hold values beyond +-1: those are clipped, with a warning.
    Returns the path written.
    """
    import soundfile as sf

    file = Path(path).expanduser()
    array = _to_float32_numpy(waveform, str(file))
    if array.ndim not in (1, 2):
        raise AudioError(f"{file}: expected (samples,) or (channels, samples), got shape {array.shape}")
    _check_finite(array, str(file))
    extension = file.suffix.lstrip(".").upper()
    if subtype is None and extension in _PCM16_FORMATS:
        subtype = "PCM_16"
    if subtype is not None and subtype.upper().startswith("PCM") and np.abs(array).max(initial=0.0) > 1.0:
        warnings.warn(f"{file}: samples beyond +-1 are clipped to fit {subtype}", stacklevel=2)
        array = np.clip(array, -1.0, 1.0)
    try:
        sf.write(str(file), array.T, int(sample_rate), subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{file}: cannot write ({exc})") from exc
    return file
