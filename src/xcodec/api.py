"""The simple API: ``xcodec.load(...)`` then ``encode`` paths/arrays to codes and ``decode`` back.

This layer owns what users should not have to think about: reading and resampling
files, mono mixdown, batching items by length, device placement and per-item error
reporting. Model math stays in :mod:`xcodec.models`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch

from xcodec.base import CodecModel
from xcodec.errors import AudioError, XcodecError

__all__ = ["AudioInput", "BatchError", "Codec", "ItemError", "PreparedAudio", "load"]

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]

DEFAULT_MODEL = "HKUSTAudio/xcodec2-hf"


@dataclasses.dataclass
class PreparedAudio:
    """One input made ready for the codec.

    waveform: (samples,) float32 mono at the codec's sampling rate.
    """

    waveform: torch.Tensor
    source: str
    original_sample_rate: int
    mixed_down: bool = False


@dataclasses.dataclass
class ItemError:
    """Why one item of a batch failed."""

    index: int
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class BatchError(XcodecError):
    """Some items of a batch failed; ``results`` holds the others (None where an item failed)."""

    def __init__(self, errors: list[ItemError], results: list[torch.Tensor | None]):
        self.errors = errors
        self.results = results
        lines = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} of {len(results)} items failed: {lines}{more}")


def _describe(item: object, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"item {index}"


class Codec:
    """A loaded codec with a list-in, list-out interface.

    ``encode`` takes paths, numpy arrays or tensors (1-D mono, or (channels, samples)) and
    returns one ``(num_codebooks, frames)`` int64 tensor per item; ``decode`` takes those
    and returns one ``(samples,)`` float32 tensor per item at :attr:`sample_rate`.
    """

    def __init__(self, model: CodecModel, model_id: str = "", *, max_batch_seconds: float = 120.0):
        self.model = model.eval()
        self.model_id = model_id
        self.max_batch_seconds = max_batch_seconds

    # ---- description -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.model.frame_rate

    @property
    def hop_length(self) -> int:
        return self.model.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.model.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.model.codebook_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- input ---------------------------------------------------------------------------
    def prepare(self, item: AudioInput, sampling_rate: int | None = None, *, index: int = 0) -> PreparedAudio:
        """Read/resample/mix down one input; raise :class:`AudioError` naming it on bad input."""
        from xcodec.audio import as_waveform, load_audio

        source = _describe(item, index)
        if isinstance(item, (str, os.PathLike)):
            loaded = load_audio(Path(item), self.sample_rate)
            return PreparedAudio(loaded.waveform, source, loaded.original_sample_rate, loaded.mixed_down)
        if sampling_rate is None:
            raise AudioError(f"{source}: pass sampling_rate= with arrays and tensors")
        try:
            loaded = as_waveform(item, sampling_rate, self.sample_rate)
        except AudioError as exc:
            raise AudioError(f"{source}: {exc}") from exc
        return PreparedAudio(loaded.waveform, source, sampling_rate, loaded.mixed_down)

    def _batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Group item indices into batches of similar length, at most ``max_batch_seconds`` of padded audio."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        budget = max(1, int(self.max_batch_seconds * self.sample_rate))
        batch_invariant = bool(getattr(self.model, "batch_invariant", False))
        group: list[int] = []
        for i in order:
            longest = max([lengths[j] for j in group] + [lengths[i]])
            same_length = not group or lengths[group[0]] == lengths[i]
            fits = (len(group) + 1) * longest <= budget
            if group and not (fits and (batch_invariant or same_length)):
                yield group
                group = []
            group.append(i)
        if group:
            yield group

    # ---- encode / decode -----------------------------------------------------------------
    @torch.inference_mode()
    def encode_prepared(
        self, items: Sequence[PreparedAudio], *, bandwidth: float | None = None
    ) -> list[torch.Tensor]:
        """Encode already prepared items; returns one (num_codebooks, frames) int64 CPU tensor each."""
        results: list[torch.Tensor | None] = [None] * len(items)
        lengths = [int(p.waveform.shape[-1]) for p in items]
        for group in self._batches(lengths):
            longest = max(lengths[i] for i in group)
            waveforms = torch.zeros(len(group), longest, dtype=torch.float32)
            for row, i in enumerate(group):
                waveforms[row, : lengths[i]] = items[i].waveform
            batch_lengths = torch.tensor([lengths[i] for i in group], dtype=torch.long)
            out = self.model.tokenize(
                waveforms.to(self.device, self.model.dtype),
                batch_lengths.to(self.device),
                bandwidth=bandwidth,
            )
            codes = out.audio_codes.cpu()
            for row, i in enumerate(group):
                results[i] = codes[row, :, : int(out.code_lengths[row])].clone()
        return [r for r in results if r is not None]

    def encode(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        sampling_rate: int | None = None,
        *,
        bandwidth: float | None = None,
    ) -> list[torch.Tensor] | torch.Tensor:
        """Encode one input or a list of them.

        A single input returns one ``(num_codebooks, frames)`` tensor; a list returns a
        list. If some items fail, the others are still encoded and a :class:`BatchError`
        carries both (``.results`` and ``.errors``).
        """
        single = not isinstance(inputs, (list, tuple))
        items: Sequence[AudioInput] = [inputs] if single else inputs  # type: ignore[list-item,assignment]
        prepared: list[PreparedAudio | None] = []
        errors: list[ItemError] = []
        for index, item in enumerate(items):
            try:
                prepared.append(self.prepare(item, sampling_rate, index=index))
            except AudioError as exc:
                prepared.append(None)
                errors.append(ItemError(index, _describe(item, index), str(exc)))
        good = [p for p in prepared if p is not None]
        encoded = iter(self.encode_prepared(good, bandwidth=bandwidth))
        results = [next(encoded) if p is not None else None for p in prepared]
        if errors:
            if single:
                raise AudioError(str(errors[0]))
            raise BatchError(errors, results)
        return results[0] if single else results  # type: ignore[return-value]

    def check_codes(self, codes: torch.Tensor, *, name: str = "codes") -> torch.Tensor:
        """Validate one item's codes, (num_codebooks, frames) or (frames,), and return them as int64."""
        codes = torch.as_tensor(codes)
        if codes.dim() == 1:
            codes = codes.unsqueeze(0)
        if codes.dim() != 2:
            raise XcodecError(f"{name}: expected shape (num_codebooks, frames), got {tuple(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise XcodecError(f"{name}: codes must be integers, got {codes.dtype}")
        num_codebooks, frames = codes.shape
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise XcodecError(
                f"{name}: {num_codebooks} codebooks, this codec takes 1 to {self.num_codebooks}"
            )
        if frames == 0:
            raise XcodecError(f"{name}: no frames to decode")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise XcodecError(
                f"{name}: code values must lie in [0, {self.codebook_size}), found {low}..{high}"
            )
        return codes.long()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        """Decode codes to audio: one ``(samples,)`` float32 CPU tensor per item.

        ``codes`` is one ``(num_codebooks, frames)`` tensor, a list of them, or a padded
        ``(batch, num_codebooks, frames)`` tensor (all items full length).
        """
        single = isinstance(codes, torch.Tensor) and codes.dim() <= 2
        items: list[torch.Tensor]
        if isinstance(codes, torch.Tensor):
            items = list(codes.unbind(0)) if codes.dim() == 3 else [codes]
        else:
            items = list(codes)
        checked = [self.check_codes(c, name=f"codes[{i}]") for i, c in enumerate(items)]
        results: list[torch.Tensor | None] = [None] * len(checked)
        frames = [int(c.shape[-1]) for c in checked]
        for group in self._batches([f * self.hop_length for f in frames]):
            num_codebooks = {int(checked[i].shape[0]) for i in group}
            for k in sorted(num_codebooks):
                sub = [i for i in group if checked[i].shape[0] == k]
                longest = max(frames[i] for i in sub)
                batch = torch.zeros(len(sub), k, longest, dtype=torch.long)
                for row, i in enumerate(sub):
                    batch[row, :, : frames[i]] = checked[i]
                code_lengths = torch.tensor([frames[i] for i in sub], dtype=torch.long)
                out = self.model.detokenize(batch.to(self.device), code_lengths.to(self.device))
                audio = out.audio.float().cpu()
                for row, i in enumerate(sub):
                    results[i] = audio[row, : int(out.lengths[row])].clone()
        decoded = [r for r in results if r is not None]
        return decoded[0] if single else decoded


def load(
    id_or_path: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    max_batch_seconds: float = 120.0,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
) -> Codec:
    """Load an X-Codec or X-Codec2 checkpoint (hub id or local folder) behind the simple API."""
    from xcodec.auto import AutoModel

    model = AutoModel.from_pretrained(
        id_or_path,
        device=device,
        dtype=dtype,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
    return Codec(model, str(id_or_path), max_batch_seconds=max_batch_seconds)
