"""Decode and resample one corpus item; runs in background worker processes, never loads a model.

The waveform produced here is exactly what :meth:`xcodec.api.Codec.prepare` produces for
the same file (both call :func:`xcodec.audio.load_audio`), so the tokens equal those of
``xcodec encode``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xcodec.dataset.sources import CorpusSource, open_table, table_row
from xcodec.errors import AudioError

__all__ = ["DecodeRequest", "Decoded", "decode_item"]

# Decode workers open a table-backed dataset once and keep it (memory-mapped) for later rows.
_OPEN_TABLES: dict[str, Any] = {}


@dataclasses.dataclass
class DecodeRequest:
    """What a worker needs to read one item: a file path, or a row of a table-backed source."""

    index: int
    source: str
    path: str | None
    row: int | None


@dataclasses.dataclass
class Decoded:
    """A decoded item. waveform: (samples,) float32 mono at the codec rate; None when ``error`` is set."""

    index: int
    waveform: np.ndarray | None
    original_sample_rate: int = 0
    mixed_down: bool = False
    error: str | None = None


def decode_item(request: DecodeRequest, sample_rate: int, corpus: CorpusSource) -> Decoded:
    """Read one item; any failure becomes ``Decoded.error`` so one bad file never stops a job."""
    try:
        if request.path is not None:
            return _decode_file(request.index, Path(request.path), sample_rate)
        assert request.row is not None
        return _decode_row(request, sample_rate, corpus)
    except AudioError as exc:
        message = str(exc)
        if request.source not in message:  # rows decoded through a temporary file name the row instead
            message = f"{request.source}: {message}"
        return Decoded(request.index, None, error=message)
    except Exception as exc:  # a decoder bug on one file must not kill the job; the reason is kept
        return Decoded(request.index, None, error=f"{request.source}: {type(exc).__name__}: {exc}")


def _decode_file(index: int, path: Path, sample_rate: int) -> Decoded:
    from xcodec.audio import load_audio

    loaded = load_audio(path, sample_rate)
    waveform = np.ascontiguousarray(loaded.waveform.numpy(), dtype=np.float32)
    return Decoded(index, waveform, int(loaded.original_sample_rate), loaded.mixed_down)


def _decode_row(request: DecodeRequest, sample_rate: int, corpus: CorpusSource) -> Decoded:
    key = f"{corpus.kind}:{corpus.location}:{corpus.split}"
    if key not in _OPEN_TABLES:
        _OPEN_TABLES[key] = open_table(corpus)
    assert corpus.audio_column is not None and request.row is not None
    cell = table_row(_OPEN_TABLES[key], request.row, corpus.audio_column)
    if cell is None:
        raise AudioError(f"{request.source}: the audio cell is empty")
    if isinstance(cell, str):
        return _decode_file(request.index, Path(cell), sample_rate)
    if isinstance(cell, (bytes, bytearray)):
        return _decode_bytes(request.index, bytes(cell), "", sample_rate)
    if isinstance(cell, dict):
        if cell.get("array") is not None:
            return _decode_array(request, cell["array"], cell.get("sampling_rate"), sample_rate)
        if cell.get("bytes"):
            return _decode_bytes(request.index, cell["bytes"], str(cell.get("path") or ""), sample_rate)
        if cell.get("path"):
            return _decode_file(request.index, Path(cell["path"]), sample_rate)
    raise AudioError(f"{request.source}: cannot read audio from a cell of type {type(cell).__name__}")


def _decode_bytes(index: int, data: bytes, name: str, sample_rate: int) -> Decoded:
    """Encoded audio held in the dataset: through a temporary file, so the one file reader is used."""
    suffix = Path(name).suffix if name else ".audio"
    handle, temp_name = tempfile.mkstemp(suffix=suffix, prefix="xcodec-")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
        return _decode_file(index, Path(temp_name), sample_rate)
    finally:
        os.unlink(temp_name)


def _decode_array(request: DecodeRequest, array: Any, rate: Any, sample_rate: int) -> Decoded:
    from xcodec.audio import as_waveform

    if rate is None:
        raise AudioError(f"{request.source}: audio array without a sampling_rate")
    loaded = as_waveform(np.asarray(array), int(rate), sample_rate)
    waveform = np.ascontiguousarray(loaded.waveform.numpy(), dtype=np.float32)
    return Decoded(request.index, waveform, int(loaded.original_sample_rate), loaded.mixed_down)
