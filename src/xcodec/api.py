"""The simple API: ``xcodec.load(...)`` then ``encode`` paths/arrays to codes and ``decode`` back.

This layer owns what users should not have to think about: reading and resampling
files, mono mixdown, batching items by length, windowing long audio
(:mod:`xcodec.windowing`), device placement and per-item error reporting. Model math
stays in :mod:`xcodec.models`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from xcodec.base import CodecModel
from xcodec.errors import ArgumentError, AudioError, BatchError, ItemError, XcodecError, isolate_items
from xcodec.windowing import Window, WindowConfig, plan_windows, stitch_audio, stitch_codes, window_audio

if TYPE_CHECKING:
    from xcodec.runtime import RuntimeOptions
    from xcodec.streaming import DecoderStream

__all__ = ["AudioInput", "BatchError", "Codec", "ItemError", "PreparedAudio", "load"]

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]

DEFAULT_MODEL = "HKUSTAudio/xcodec2-hf"

# Padded audio per model call on accelerators when the caller sets no budget. On the CPU
# the default is one window: batching gains little there and memory grows with the batch.
ACCELERATOR_BATCH_SECONDS = 120.0


@dataclasses.dataclass
class PreparedAudio:
    """One input made ready for the codec.

    waveform: (samples,) float32 mono at the codec's sampling rate.
    """

    waveform: torch.Tensor
    source: str
    original_sample_rate: int
    mixed_down: bool = False


def _describe(item: object, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"item {index}"


def _peak_of_float_input(item: Any) -> float:
    """Largest magnitude of a float array/tensor (0 for integer PCM, which cannot exceed full scale)."""
    if isinstance(item, torch.Tensor):
        if not item.is_floating_point() or item.numel() == 0:
            return 0.0
        return float(item.detach().abs().max())
    array = np.asarray(item)
    if array.dtype.kind != "f" or array.size == 0:
        return 0.0
    return float(np.abs(array).max())


class Codec:
    """A loaded codec with a list-in, list-out interface.

    ``encode`` takes paths, numpy arrays or tensors (1-D mono, or (channels, samples)) and
    returns one ``(num_codebooks, frames)`` int64 tensor per item; ``decode`` takes those
    and returns one ``(samples,)`` float32 tensor per item at :attr:`sample_rate`.

    model: any :class:`~xcodec.base.CodecModel`.
    max_batch_seconds: padded audio per model call; None picks one window on the CPU and
        120 s on accelerators.
    windows: geometry of long-audio windows (:class:`~xcodec.windowing.WindowConfig`).
    """

    def __init__(
        self,
        model: CodecModel,
        model_id: str = "",
        *,
        max_batch_seconds: float | None = None,
        windows: WindowConfig | None = None,
    ):
        self.model = model.eval()
        self.model_id = model_id
        self.windows = windows if windows is not None else WindowConfig()
        self.window_frames, self.context_frames, self.crossfade_frames = self.windows.frames(self.frame_rate)
        if max_batch_seconds is None:
            on_cpu = self.device.type == "cpu"
            max_batch_seconds = self.window_frames / self.frame_rate if on_cpu else ACCELERATOR_BATCH_SECONDS
        self.max_batch_seconds = max_batch_seconds

    # ---- description -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Sampling rate in Hz of the audio ``decode`` returns (and ``encode`` takes, unless
        :attr:`input_sample_rate` differs: NeuCodec encodes 16 kHz and decodes 24 kHz)."""
        return self.model.sample_rate

    @property
    def input_sample_rate(self) -> int:
        """Sampling rate in Hz ``encode`` resamples its inputs to."""
        return self.model.input_sample_rate

    @property
    def input_hop_length(self) -> int:
        """Input samples (at :attr:`input_sample_rate`) per code frame."""
        return self.model.input_hop_length

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.model.frame_rate

    @property
    def hop_length(self) -> int:
        """Output audio samples (at :attr:`sample_rate`) per code frame."""
        return self.model.hop_length

    @property
    def num_codebooks(self) -> int:
        """The most codebooks (rows of the codes) a frame carries."""
        return self.model.num_codebooks

    @property
    def codebook_size(self) -> int:
        """Codes lie in ``[0, codebook_size)``."""
        return self.model.codebook_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- input ---------------------------------------------------------------------------
    def prepare(self, item: AudioInput, sampling_rate: int | None = None, *, index: int = 0) -> PreparedAudio:
        """Read, mix down and resample one input; raise :class:`AudioError` naming it on bad input.

        Float inputs beyond +-1 are kept as they are, with a warning naming the item.
        """
        from xcodec.audio import as_waveform, load_audio

        source = _describe(item, index)
        if isinstance(item, (str, os.PathLike)):
            loaded = load_audio(Path(item), self.input_sample_rate)  # warns itself on samples beyond +-1
            return PreparedAudio(loaded.waveform, source, loaded.original_sample_rate, loaded.mixed_down)
        if sampling_rate is None:
            raise AudioError(f"{source}: pass sampling_rate= with arrays and tensors")
        try:
            loaded = as_waveform(item, sampling_rate, self.input_sample_rate)
        except AudioError as exc:
            raise AudioError(f"{source}: {exc}") from exc
        peak = _peak_of_float_input(item)
        if peak > 1.0:
            warnings.warn(
                f"{source}: samples reach {peak:.3f}, beyond the [-1, 1] range; encoded as they are",
                stacklevel=3,
            )
        return PreparedAudio(loaded.waveform, source, sampling_rate, loaded.mixed_down)

    def _batches(self, lengths: Sequence[int], sample_rate: int) -> Iterator[list[int]]:
        """Group indices into batches of similar length, at most ``max_batch_seconds`` of padded audio.

        lengths: samples at ``sample_rate``.

        Items of different lengths share a batch only with a model that declares
        ``batch_invariant`` (padding that cannot change any item's result).
        """
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        budget = max(1, int(self.max_batch_seconds * sample_rate))
        batch_invariant = self.model.batch_invariant
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

    # ---- model calls on lists of segments ----------------------------------------------
    def _tokenize_many(self, waveforms: list[torch.Tensor], bandwidth: float | None) -> list[torch.Tensor]:
        """Codes (num_codebooks, frames) of each waveform (samples,), batched by length."""
        results: list[torch.Tensor | None] = [None] * len(waveforms)
        lengths = [int(w.shape[-1]) for w in waveforms]
        for group in self._batches(lengths, self.input_sample_rate):
            longest = max(lengths[i] for i in group)
            batch = torch.zeros(len(group), longest, dtype=torch.float32)
            for row, i in enumerate(group):
                batch[row, : lengths[i]] = waveforms[i]
            batch_lengths = torch.tensor([lengths[i] for i in group], dtype=torch.long)
            out = self.model.tokenize(
                batch.to(self.device, self.model.dtype), batch_lengths.to(self.device), bandwidth=bandwidth
            )
            codes = out.audio_codes.cpu()
            for row, i in enumerate(group):
                results[i] = codes[row, :, : int(out.code_lengths[row])].clone()
        return [r for r in results if r is not None]

    def _detokenize_many(self, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Audio (samples,) float32 of each code matrix (num_codebooks, frames), batched by length."""
        results: list[torch.Tensor | None] = [None] * len(codes)
        frames = [int(c.shape[-1]) for c in codes]
        for group in self._batches([f * self.hop_length for f in frames], self.sample_rate):
            for k in sorted({int(codes[i].shape[0]) for i in group}):
                sub = [i for i in group if codes[i].shape[0] == k]
                longest = max(frames[i] for i in sub)
                batch = torch.zeros(len(sub), k, longest, dtype=torch.long)
                for row, i in enumerate(sub):
                    batch[row, :, : frames[i]] = codes[i]
                code_lengths = torch.tensor([frames[i] for i in sub], dtype=torch.long)
                out = self.model.detokenize(batch.to(self.device), code_lengths.to(self.device))
                audio = out.audio.float().cpu()
                for row, i in enumerate(sub):
                    results[i] = audio[row, : int(out.lengths[row])].clone()
        return [r for r in results if r is not None]

    def _windowed(
        self,
        items: Sequence[torch.Tensor],
        num_frames: Callable[[torch.Tensor], int],
        cut: Callable[[torch.Tensor, Window], torch.Tensor],
        run_many: Callable[[list[torch.Tensor]], list[torch.Tensor]],
        stitch: Callable[[list[Window], list[torch.Tensor]], torch.Tensor],
        whole_up_to: int,
    ) -> list[torch.Tensor]:
        """Plan windows for every item, run all windows of all items together, stitch each item.

        An item that fits in one window goes to the model whole (``cut`` is not called).
        """
        plans = [
            plan_windows(num_frames(item), self.window_frames, self.context_frames, whole_up_to=whole_up_to)
            for item in items
        ]
        segments: list[torch.Tensor] = []
        for item, plan in zip(items, plans, strict=True):
            segments.extend([item] if len(plan) == 1 else [cut(item, window) for window in plan])
        outputs = iter(run_many(segments))
        results = []
        for plan in plans:
            pieces = [next(outputs) for _ in plan]
            results.append(pieces[0] if len(plan) == 1 else stitch(plan, pieces))
        return results

    # ---- encode / decode -----------------------------------------------------------------
    @torch.inference_mode()
    def encode_prepared(
        self, items: Sequence[PreparedAudio], *, bandwidth: float | None = None
    ) -> list[torch.Tensor]:
        """Encode already prepared items; one (num_codebooks, frames) int64 CPU tensor each.

        Raises the model's error if any item fails (:meth:`encode` isolates the item), and
        :class:`~xcodec.errors.ArgumentError` for a bandwidth the model lacks.
        """
        self.model.check_bandwidth(bandwidth)
        hop = self.input_hop_length
        return self._windowed(
            [p.waveform for p in items],
            num_frames=lambda waveform: math.ceil(waveform.shape[-1] / hop),
            cut=lambda waveform, window: window_audio(waveform, window, hop),
            run_many=lambda segments: self._tokenize_many(segments, bandwidth),
            stitch=stitch_codes,
            whole_up_to=self.window_frames,
        )

    def encode(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        sampling_rate: int | None = None,
        *,
        bandwidth: float | None = None,
    ) -> list[torch.Tensor] | torch.Tensor:
        """Encode one input or a list of them to codes.

        inputs: a path (any format libsndfile reads), or a numpy array / torch tensor of
            shape (samples,) or (channels, samples), float or integer PCM; or a list of those.
        sampling_rate: the rate of array and tensor inputs (required for them; files
            carry their own).
        bandwidth: kbps, for codecs with a choice of codebook count (X-Codec); None = all.

        Returns one ``(num_codebooks, frames)`` int64 CPU tensor for a single input, a
        list of them for a list. Every item gets exactly the codes the model gives it
        alone, whatever it is batched with. Items longer than one window
        (``Codec.windows``, 30 s by default) are encoded in overlapping windows.

        What happens to unusual input:

        - empty (0 samples) or a 0-byte file, unreadable or truncated files, NaN or Inf
          samples: :class:`~xcodec.errors.AudioError` naming the item;
        - shorter than one hop, or pure silence: encoded like any audio (X-Codec2 gives
          at least one frame);
        - float samples beyond +-1: a ``UserWarning`` naming the item; encoded unchanged;
        - integer PCM arrays: scaled by full scale (int16 / 32768, ...); float64: cast to
          float32; any sampling rate: resampled (soxr HQ); several channels: averaged;
        - a list where some items fail: the others are still encoded, then
          :class:`BatchError` is raised with ``.results`` (None at failed items) and
          ``.errors`` (one :class:`ItemError` per failed item). A single bad input raises
          its own error.
        """
        items: list[AudioInput]
        if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
            single, items = True, [inputs]
        else:
            single, items = False, list(inputs)
        prepared: list[PreparedAudio | None] = []
        errors: list[ItemError] = []
        for index, item in enumerate(items):
            try:
                prepared.append(self.prepare(item, sampling_rate, index=index))
            except AudioError as exc:
                if single:
                    raise
                prepared.append(None)
                errors.append(ItemError(index, _describe(item, index), str(exc)))
        good = [(index, p) for index, p in enumerate(prepared) if p is not None]
        results: list[torch.Tensor | None] = [None] * len(items)
        if single:
            # One input raises its own error; a list isolates each bad item (below).
            results = list(self.encode_prepared([p for _, p in good], bandwidth=bandwidth))
        else:
            self.model.check_bandwidth(bandwidth)  # a job-level error: raised, not N item failures
            encoded, failed = isolate_items(
                [p for _, p in good],
                lambda batch: self.encode_prepared(batch, bandwidth=bandwidth),
                lambda _, one: one.source,
            )
            for (index, _), codes in zip(good, encoded, strict=True):
                results[index] = codes
            errors += [ItemError(good[e.index][0], e.source, e.message) for e in failed]
        if errors:
            raise BatchError(sorted(errors, key=lambda e: e.index), results)
        done = [codes for codes in results if codes is not None]  # all of them: nothing failed
        return done[0] if single else done

    def check_codes(self, codes: Any, *, name: str = "codes") -> torch.Tensor:
        """Validate one item's codes and return them as an int64 tensor (num_codebooks, frames).

        codes: (num_codebooks, frames), or (frames,) for one codebook; integer tensor or
            array with values in ``[0, codebook_size)``, 1 to ``num_codebooks`` rows and at
            least one frame. Anything else raises :class:`XcodecError` naming ``name``.
        """
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
                f"{name}: {num_codebooks} codebooks (shape {tuple(codes.shape)}), "
                f"this codec takes 1 to {self.num_codebooks}"
            )
        if frames == 0:
            raise XcodecError(f"{name}: no frames to decode")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise XcodecError(
                f"{name}: code values must lie in [0, {self.codebook_size}), found {low}..{high}"
            )
        return codes.long().cpu()

    @torch.inference_mode()
    def decode_checked(self, codes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decode codes already passed through :meth:`check_codes`; one (samples,) float32 CPU tensor each."""
        hop = self.hop_length
        return self._windowed(
            list(codes),
            num_frames=lambda item: int(item.shape[-1]),
            cut=lambda item, window: item[:, window.start : window.stop],
            run_many=self._detokenize_many,
            stitch=lambda plan, pieces: stitch_audio(plan, pieces, hop, self.crossfade_frames),
            # Codes of audio that fit one window decode whole too (X-Codec2 gives one more
            # frame than whole hops, see its frames_for).
            whole_up_to=self.model.frames_for(self.window_frames * self.input_hop_length),
        )

    def decode(self, codes: Any) -> list[torch.Tensor] | torch.Tensor:
        """Decode codes to audio: one ``(samples,)`` float32 CPU tensor per item at :attr:`sample_rate`.

        codes: one ``(num_codebooks, frames)`` tensor or array (returns one tensor), a list
            of them (returns a list), or a ``(batch, num_codebooks, frames)`` tensor whose
            items are all full length (returns a list). Each item decodes to
            ``frames * hop_length`` samples; items longer than one window are decoded in
            overlapping windows joined by a cross-fade.

        Codes of the wrong shape, dtype or range raise :class:`XcodecError` naming the
        item (``codes[i]``); in a list the other items are still decoded and
        :class:`BatchError` carries both (``.results``, ``.errors``).
        """
        single = isinstance(codes, (torch.Tensor, np.ndarray)) and codes.ndim <= 2
        items: list[Any]
        if isinstance(codes, (torch.Tensor, np.ndarray)):
            items = list(codes) if codes.ndim == 3 else [codes]
        else:
            items = list(codes)
        checked: list[torch.Tensor | None] = []
        errors: list[ItemError] = []
        for index, item in enumerate(items):
            try:
                checked.append(self.check_codes(item, name=f"codes[{index}]"))
            except XcodecError as exc:
                if single:
                    raise
                checked.append(None)
                errors.append(ItemError(index, f"codes[{index}]", str(exc)))
        good = [(index, c) for index, c in enumerate(checked) if c is not None]
        results: list[torch.Tensor | None] = [None] * len(items)
        for (index, _), audio in zip(good, self.decode_checked([c for _, c in good]), strict=True):
            results[index] = audio
        if errors:
            raise BatchError(errors, results)
        done = [audio for audio in results if audio is not None]  # all of them: nothing failed
        return done[0] if single else done

    # ---- streaming ---------------------------------------------------------------------
    def decoder_stream(self, batch_size: int = 1, **options: Any) -> DecoderStream:
        """A stream: ``push(codes) -> audio`` as codes arrive, ``flush() -> audio`` at the end.

        X-Codec streams exactly; X-Codec2/NeuCodec take ``left_context``, ``lookahead`` and
        ``crossfade`` (frames) for their windowed decoder (:mod:`xcodec.streaming`).
        """
        from xcodec.streaming import decoder_stream

        return decoder_stream(self.model, batch_size, **options)

    def stream_decode(self, chunks: Iterable[Any], **options: Any) -> Iterator[torch.Tensor]:
        """Yield (samples,) float32 audio as soon as it is final, for code chunks (num_codebooks, n).

        Everything yielded joins to the length of the offline decode of all the codes.
        """
        from xcodec.streaming import stream_decode

        return stream_decode(self.model, chunks, **options)


def load(
    id_or_path: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    max_batch_seconds: float | None = None,
    windows: WindowConfig | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    parts: str = "all",
    runtime: RuntimeOptions | None = None,
) -> Codec:
    """Load an X-Codec or X-Codec2 checkpoint (hub id or local folder) behind the simple API.

    device: where the model runs ("cpu", "cuda", ...); inputs are moved there and
        results come back on the CPU. max_batch_seconds, windows: see :class:`Codec`.
    parts: "encoder" or "decoder" loads only what that direction needs (X-Codec2: 1.65
        or 0.70 GiB of float32 weights instead of 2.34); the other method then raises.
    runtime: exact reference order vs fast paths, chunking and windows in one typed
        object (:class:`xcodec.runtime.RuntimeOptions`); its ``windows`` and ``windows=``
        cannot both be given.
    """
    from xcodec.auto import AutoModel
    from xcodec.runtime import apply_runtime_options

    if runtime is not None and runtime.windows is not None:
        if windows is not None:
            raise ArgumentError("pass windows= or runtime=RuntimeOptions(windows=...), not both")
        windows = runtime.windows

    model = AutoModel.from_pretrained(
        id_or_path,
        device=device,
        dtype=dtype,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        parts=parts,
    )
    if runtime is not None:
        apply_runtime_options(model, runtime)
    return Codec(model, str(id_or_path), max_batch_seconds=max_batch_seconds, windows=windows)
