"""The onnxruntime backend: an export folder behind the :class:`xcodec.api.Codec` interface, without torch.

``OnnxCodec(folder)`` (or ``xcodec.load(folder)``) reads the folder's ``config.json`` and
runs ``encoder.onnx`` / ``decoder.onnx`` with onnxruntime. Audio is read with soundfile,
mixed to mono and resampled with soxr (HQ), as :mod:`xcodec.audio` does, in numpy. This
module imports neither torch nor any xcodec module that does, so a process that only
uses it never loads torch (tests/test_onnx.py checks ``sys.modules``).

Differences from the PyTorch :class:`~xcodec.api.Codec`: results are numpy arrays
(``tensors=True`` gives torch tensors, for callers that already use torch, such as the
CLI). Long items are cut into the PyTorch codec's overlapping windows (``windows=``, a
:class:`~xcodec.windowing.WindowConfig`, 30 s by default; :mod:`xcodec.onnx.windows`), so
both backends give the same codes and audio for them too; ``whole=True`` runs every
item whole instead (the graphs have no length cap). Every item
of a padded batch gets exactly its alone-run codes and audio, through the graphs' masks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xcodec.errors import (
    ArgumentError,
    AudioError,
    BatchError,
    CheckpointError,
    ItemError,
    XcodecError,
    isolate_items,
)
from xcodec.onnx.windows import codes_frames_for, stitch_audio, stitch_codes
from xcodec.windowing import Window, WindowConfig, plan_windows

__all__ = ["OnnxCodec", "OnnxPreparedAudio", "is_onnx_export"]

CONFIG_NAME = "config.json"
FORMAT = "xcodec-onnx"
RESAMPLE_QUALITY = "HQ"
# Padded audio per encoder/decoder call (seconds): bounds memory, as Codec.max_batch_seconds.
DEFAULT_BATCH_SECONDS = 30.0


def is_onnx_export(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder written by ``xcodec export-onnx`` (its config.json says so)."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class OnnxPreparedAudio:
    """One input made ready: waveform (samples,) float32 mono numpy at the codec's input rate."""

    waveform: np.ndarray
    source: str
    original_sample_rate: int
    mixed_down: bool = False


def _to_float32(audio: Any, source: str) -> np.ndarray:
    """Numeric array (or anything with ``.numpy()``) -> float32, integer PCM scaled to [-1, 1)."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().float().numpy()
    array = np.asarray(audio)
    if array.dtype == np.uint8:
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if array.dtype.kind == "i":
        return (array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))).astype(np.float32)
    if array.dtype.kind != "f":
        raise AudioError(f"{source} has dtype {array.dtype}; expected float or integer PCM samples")
    return array.astype(np.float32)


def _resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return waveform
    import soxr

    return np.ascontiguousarray(
        soxr.resample(waveform, rate, target, quality=RESAMPLE_QUALITY), dtype=np.float32
    )


def _check_finite(waveform: np.ndarray, source: str) -> None:
    if not np.isfinite(waveform).all():
        raise AudioError(f"{source}: holds NaN or Inf samples")


class OnnxCodec:
    """An ONNX export folder with :class:`xcodec.api.Codec`'s methods, run by onnxruntime.

    folder: written by :func:`xcodec.onnx.export.export_onnx` (``xcodec export-onnx``).
    providers: onnxruntime execution providers (default: CPU).
    threads: intra-op threads per session (None: onnxruntime's default).
    tensors: return torch tensors instead of numpy arrays (imports torch).
    max_batch_seconds: padded audio per onnxruntime call.
    windows: geometry of long-audio windows, as :class:`xcodec.api.Codec`'s (default
        :class:`~xcodec.windowing.WindowConfig`: 30 s windows, 2 s context, 1 s cross-fade).
    whole: run every item whole, however long (no windows; memory grows with the item).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        tensors: bool = False,
        max_batch_seconds: float = DEFAULT_BATCH_SECONDS,
        windows: WindowConfig | None = None,
        whole: bool = False,
    ) -> None:
        self.folder = Path(folder)
        if not is_onnx_export(self.folder):
            raise CheckpointError(
                f"{self.folder}: not an ONNX export folder (no {CONFIG_NAME} of format {FORMAT!r})"
            )
        self.config: dict[str, Any] = json.loads((self.folder / CONFIG_NAME).read_text())
        self.model_id = str(self.folder)
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.threads = threads
        self.tensors = tensors
        self.max_batch_seconds = max_batch_seconds
        self._sessions: dict[str, Any] = {}
        self.windows = windows if windows is not None else WindowConfig()
        self.window_frames, self.context_frames, self.crossfade_frames = self.windows.frames(self.frame_rate)
        self.whole = whole

    # ---- description -------------------------------------------------------------------
    @property
    def codec(self) -> str:
        """ "xcodec2", "neucodec" or "xcodec"."""
        return str(self.config["codec"])

    @property
    def sample_rate(self) -> int:
        return int(self.config["sample_rate"])

    @property
    def input_sample_rate(self) -> int:
        return int(self.config["input_sample_rate"])

    @property
    def hop_length(self) -> int:
        return int(self.config["hop_length"])

    @property
    def input_hop_length(self) -> int:
        return int(self.config["input_hop_length"])

    @property
    def frame_rate(self) -> float:
        return float(self.config["frame_rate"])

    @property
    def num_codebooks(self) -> int:
        return int(self.config["num_codebooks"])

    @property
    def codebook_size(self) -> int:
        return int(self.config["codebook_size"])

    @property
    def bandwidths(self) -> tuple[float, ...]:
        return tuple(float(b) for b in self.config.get("bandwidths", []))

    @property
    def parts(self) -> tuple[str, ...]:
        """The exported parts ("encoder", "decoder")."""
        return tuple(self.config["parts"])

    @property
    def model(self) -> OnnxCodec:
        """The codec itself: the CLI calls ``codec.model.check_bandwidth``."""
        return self

    def check_bandwidth(self, bandwidth: float | None) -> None:
        """Raise :class:`ArgumentError` naming ``bandwidth`` unless the codec offers it (None: all codebooks)."""
        if bandwidth is None or not self.bandwidths:
            return
        if float(bandwidth) not in self.bandwidths:
            raise ArgumentError(
                f"bandwidth={bandwidth:g} kbps is not one this model offers: "
                + ", ".join(f"{b:g}" for b in self.bandwidths)
            )

    def _codebooks_for(self, bandwidth: float | None) -> int:
        if bandwidth is None or not self.bandwidths:
            return self.num_codebooks
        return int(self.config["bandwidth_codebooks"][f"{float(bandwidth):g}"])

    def _session(self, part: str) -> Any:
        if part not in self.config["parts"]:
            raise ArgumentError(
                f"{self.folder} holds no {part} (exported: {', '.join(self.parts) or 'nothing'}); "
                f"export it with `xcodec export-onnx MODEL {self.folder} --part {part}`"
            )
        if part not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            # Errors only: the exporter's CastLike nodes make onnxruntime warn, harmlessly,
            # that it cannot constant-fold them, once per node at every load.
            options.log_severity_level = 3
            if self.threads is not None:
                options.intra_op_num_threads = self.threads
            path = self.folder / self.config["parts"][part]["file"]
            self._sessions[part] = ort.InferenceSession(str(path), options, providers=self.providers)
        return self._sessions[part]

    def _out(self, array: np.ndarray) -> Any:
        if self.tensors:
            import torch

            return torch.from_numpy(np.ascontiguousarray(array))
        return array

    # ---- input ---------------------------------------------------------------------------
    def prepare(self, item: Any, sampling_rate: int | None = None, *, index: int = 0) -> OnnxPreparedAudio:
        """Read, mix down and resample one input; raise :class:`AudioError` naming it on bad input."""
        if isinstance(item, (str, os.PathLike)):
            return self._read(Path(item))
        source = f"item {index}"
        if sampling_rate is None:
            raise AudioError(f"{source}: pass sampling_rate= with arrays and tensors")
        array = _to_float32(item, source)
        if array.ndim == 2 and array.shape[0] > array.shape[1]:
            raise AudioError(
                f"{source}: audio of shape {array.shape} looks like (samples, channels); pass it channels-first"
            )
        if array.ndim not in (1, 2) or array.shape[-1] == 0:
            raise AudioError(
                f"{source}: expected a non-empty (samples,) or (channels, samples), got {array.shape}"
            )
        _check_finite(array, source)
        if float(np.abs(array).max()) > 1.0:
            warnings.warn(f"{source}: samples beyond the [-1, 1] range; encoded as they are", stacklevel=3)
        mixed = array.ndim == 2 and array.shape[0] > 1
        mono = array.mean(axis=0) if array.ndim == 2 else array
        waveform = _resample(
            np.ascontiguousarray(mono, dtype=np.float32), int(sampling_rate), self.input_sample_rate
        )
        return OnnxPreparedAudio(waveform, source, int(sampling_rate), mixed)

    def _read(self, file: Path) -> OnnxPreparedAudio:
        import soundfile as sf

        if not file.is_file():
            raise AudioError(f"{file}: no such file")
        if file.stat().st_size == 0:
            raise AudioError(f"{file}: the file is empty (0 bytes)")
        try:
            data, rate = sf.read(str(file), dtype="float32", always_2d=True)  # (samples, channels)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"{file}: cannot read as audio ({exc})") from exc
        if data.shape[0] == 0:
            raise AudioError(f"{file}: holds no audio samples")
        _check_finite(data, str(file))
        mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
        waveform = _resample(mono, int(rate), self.input_sample_rate)
        return OnnxPreparedAudio(waveform, str(file), int(rate), data.shape[1] > 1)

    # ---- encode --------------------------------------------------------------------------
    def _encoder_counts(self, num_samples: int) -> int:
        """Samples of an item the padding mask marks: X-Codec2, NeuCodec and DistillNeuCodec add one zero ("always pad")."""
        return num_samples + 1 if self.codec in ("xcodec2", "neucodec", "distill_neucodec") else num_samples

    def _batches(self, sizes: Sequence[int], rate: int) -> list[list[int]]:
        """Indices grouped longest first, at most ``max_batch_seconds`` of padded audio per call."""
        order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
        batches: list[list[int]] = []
        for index in order:
            if batches and (len(batches[-1]) + 1) * sizes[batches[-1][0]] <= self.max_batch_seconds * rate:
                batches[-1].append(index)
            else:
                batches.append([index])
        return batches

    def _encode_batch(self, waveforms: list[np.ndarray], codebooks: int) -> list[np.ndarray]:
        session = self._session("encoder")
        hop = self.input_hop_length
        counts = [self._encoder_counts(w.shape[-1]) for w in waveforms]
        samples = -(-max(counts) // hop) * hop
        input_values = np.zeros((len(waveforms), 1, samples), np.float32)
        padding_mask = np.zeros((len(waveforms), samples), np.int64)
        for index, (waveform, count) in enumerate(zip(waveforms, counts, strict=True)):
            input_values[index, 0, : waveform.shape[-1]] = waveform
            padding_mask[index, :count] = 1
        codes, codes_mask = session.run(None, {"input_values": input_values, "padding_mask": padding_mask})
        lengths = codes_mask.sum(axis=-1)
        return [np.ascontiguousarray(codes[i, :codebooks, : int(n)]) for i, n in enumerate(lengths)]

    def encode_prepared(
        self, items: Sequence[OnnxPreparedAudio], *, bandwidth: float | None = None
    ) -> list[Any]:
        """Encode prepared items; one (num_codebooks, frames) int64 array each (a tensor with ``tensors=True``).

        An item too short for one code frame raises :class:`AudioError` naming it.
        """
        self.check_bandwidth(bandwidth)
        codebooks = self._codebooks_for(bandwidth)
        hop = self.input_hop_length
        encoded = self._windowed(
            [item.waveform for item in items],
            num_frames=lambda waveform: -(-waveform.shape[-1] // hop),
            cut=lambda waveform, window: waveform[window.start * hop : window.stop * hop],
            run_many=lambda segments: self._encode_many(segments, codebooks),
            stitch=stitch_codes,
            whole_up_to=self.window_frames,
        )
        for item, codes in zip(items, encoded, strict=True):
            if codes.shape[-1] == 0:
                raise AudioError(f"{item.source}: too short for {self.codec}, no code frame")
        return [self._out(codes) for codes in encoded]

    def _encode_many(self, waveforms: list[np.ndarray], codebooks: int) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(waveforms)
        sizes = [w.shape[-1] for w in waveforms]
        groups = [list(range(len(waveforms)))]
        if self.codec == "distill_neucodec":
            # Its encoder normalises over the whole padded input (GroupNorm, GRN), so an item
            # runs only with items of its own padded length (as the model's tokenize does).
            hop = self.input_hop_length
            by_length: dict[int, list[int]] = {}
            for index, size in enumerate(sizes):
                by_length.setdefault(-(-self._encoder_counts(size) // hop), []).append(index)
            groups = list(by_length.values())
        batches = [
            [group[i] for i in batch]
            for group in groups
            for batch in self._batches([sizes[i] for i in group], self.input_sample_rate)
        ]
        for batch in batches:
            for index, codes in zip(
                batch, self._encode_batch([waveforms[i] for i in batch], codebooks), strict=True
            ):
                results[index] = codes
        return [codes for codes in results if codes is not None]

    def _windowed(
        self,
        items: Sequence[np.ndarray],
        num_frames: Callable[[np.ndarray], int],
        cut: Callable[[np.ndarray, Window], np.ndarray],
        run_many: Callable[[list[np.ndarray]], list[np.ndarray]],
        stitch: Callable[[list[Window], list[np.ndarray]], np.ndarray],
        whole_up_to: int,
    ) -> list[np.ndarray]:
        """:meth:`xcodec.api.Codec._windowed` in numpy: plan every item, run all windows together, stitch.

        An item that fits in one window (or every item, with ``whole=True``) runs whole.
        """
        plans = [
            [Window(0, num_frames(item), 0, None)]
            if self.whole
            else plan_windows(
                num_frames(item), self.window_frames, self.context_frames, whole_up_to=whole_up_to
            )
            for item in items
        ]
        segments: list[np.ndarray] = []
        for item, plan in zip(items, plans, strict=True):
            segments.extend([item] if len(plan) == 1 else [cut(item, window) for window in plan])
        outputs = iter(run_many(segments))
        results = []
        for plan in plans:
            pieces = [next(outputs) for _ in plan]
            results.append(pieces[0] if len(plan) == 1 else stitch(plan, pieces))
        return results

    def encode(
        self, inputs: Any, sampling_rate: int | None = None, *, bandwidth: float | None = None
    ) -> list[Any] | Any:
        """One input (path, array) or a list of them -> codes, as :meth:`xcodec.api.Codec.encode`.

        A list with bad items encodes the others, then raises :class:`BatchError`.
        """
        single = isinstance(inputs, (str, os.PathLike, np.ndarray)) or hasattr(inputs, "detach")
        items = [inputs] if single else list(inputs)
        if single:
            return self.encode_prepared([self.prepare(inputs, sampling_rate)], bandwidth=bandwidth)[0]
        self.check_bandwidth(bandwidth)
        prepared: list[OnnxPreparedAudio | None] = []
        errors: list[ItemError] = []
        for index, item in enumerate(items):
            try:
                prepared.append(self.prepare(item, sampling_rate, index=index))
            except AudioError as exc:
                prepared.append(None)
                errors.append(
                    ItemError(
                        index,
                        str(item) if isinstance(item, (str, os.PathLike)) else f"item {index}",
                        str(exc),
                    )
                )
        good = [(index, p) for index, p in enumerate(prepared) if p is not None]
        encoded, failed = isolate_items(
            [p for _, p in good],
            lambda batch: self.encode_prepared(batch, bandwidth=bandwidth),
            lambda _, p: p.source,
        )
        results: list[Any] = [None] * len(items)
        for (index, _), codes in zip(good, encoded, strict=True):
            results[index] = codes
        errors += [ItemError(good[e.index][0], e.source, e.message) for e in failed]
        if errors:
            raise BatchError(sorted(errors, key=lambda e: e.index), results)
        return results

    # ---- decode --------------------------------------------------------------------------
    def check_codes(self, codes: Any, *, name: str = "codes") -> Any:
        """Validate one item's codes -> int64 (num_codebooks, frames); :class:`XcodecError` naming ``name``."""
        if hasattr(codes, "detach"):
            codes = codes.detach().cpu().numpy()
        array = np.asarray(codes)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise XcodecError(f"{name}: expected shape (num_codebooks, frames), got {array.shape}")
        if array.dtype.kind not in "iu":
            raise XcodecError(f"{name}: codes must be integers, got {array.dtype}")
        rows, frames = array.shape
        if not 1 <= rows <= self.num_codebooks:
            raise XcodecError(
                f"{name}: {rows} codebooks (shape {array.shape}), this codec takes 1 to {self.num_codebooks}"
            )
        if frames == 0:
            raise XcodecError(f"{name}: no frames to decode")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= self.codebook_size:
            raise XcodecError(
                f"{name}: code values must lie in [0, {self.codebook_size}), found {low}..{high}"
            )
        return self._out(array.astype(np.int64))

    def decode_checked(self, codes: Sequence[Any]) -> list[Any]:
        """Decode checked codes; one (samples,) float32 array each, ``frames * hop_length`` samples.

        Items longer than one window are decoded in overlapping windows joined by a cross-fade.
        """
        arrays = [np.asarray(c.numpy() if hasattr(c, "numpy") else c, dtype=np.int64) for c in codes]
        hop = self.hop_length
        decoded = self._windowed(
            arrays,
            num_frames=lambda item: int(item.shape[-1]),
            cut=lambda item, window: item[:, window.start : window.stop],
            run_many=self._decode_many,
            stitch=lambda plan, pieces: stitch_audio(plan, pieces, hop, self.crossfade_frames),
            # Codes of audio that fit one window decode whole too (as Codec.decode_checked).
            whole_up_to=codes_frames_for(
                self.codec, self.window_frames * self.input_hop_length, self.input_hop_length
            ),
        )
        return [self._out(audio) for audio in decoded]

    def _decode_many(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        session = self._session("decoder")
        results: list[np.ndarray | None] = [None] * len(arrays)
        # Items with one codebook count batch together (X-Codec's graph takes one count per call).
        groups: dict[int, list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(array.shape[0], []).append(index)
        for members in groups.values():
            sizes = [arrays[i].shape[-1] for i in members]
            for batch in self._batches(sizes, int(self.frame_rate)):
                chosen = [members[i] for i in batch]
                longest = max(arrays[i].shape[-1] for i in chosen)
                rows = arrays[chosen[0]].shape[0]
                batch_codes = np.zeros((len(chosen), rows, longest), np.int64)
                mask = np.zeros((len(chosen), longest), np.int64)
                for slot, index in enumerate(chosen):
                    frames = arrays[index].shape[-1]
                    batch_codes[slot, :, :frames] = arrays[index]
                    mask[slot, :frames] = 1
                audio, padding_mask = session.run(
                    None, {"audio_codes": batch_codes, "audio_codes_mask": mask}
                )
                for slot, index in enumerate(chosen):
                    results[index] = np.ascontiguousarray(audio[slot, 0, : int(padding_mask[slot].sum())])
        return [audio for audio in results if audio is not None]

    def decode(self, codes: Any) -> list[Any] | Any:
        """Codes -> audio, as :meth:`xcodec.api.Codec.decode`: one (num_codebooks, frames) item or a list."""
        if hasattr(codes, "detach"):
            codes = codes.detach().cpu().numpy()
        single = isinstance(codes, np.ndarray) and codes.ndim <= 2
        items = [codes] if single else list(codes)
        if single:
            return self.decode_checked([self.check_codes(codes)])[0]
        checked: list[Any] = []
        errors: list[ItemError] = []
        for index, item in enumerate(items):
            try:
                checked.append(self.check_codes(item, name=f"codes[{index}]"))
            except XcodecError as exc:
                checked.append(None)
                errors.append(ItemError(index, f"codes[{index}]", str(exc)))
        good = [(index, c) for index, c in enumerate(checked) if c is not None]
        results: list[Any] = [None] * len(items)
        for (index, _), audio in zip(good, self.decode_checked([c for _, c in good]), strict=True):
            results[index] = audio
        if errors:
            raise BatchError(errors, results)
        return results
