"""Feature extractors: waveforms in, padded model inputs out (no model code here).

Two front ends, each reading and writing the Transformers ``preprocessor_config.json``:

- :class:`Xcodec2FeatureExtractor` pads audio for X-Codec2's acoustic encoder and computes
  the Kaldi-compatible log-mel filterbank its semantic encoder (Wav2Vec2-BERT) reads,
  normalised per utterance and stacked two frames at a time.
- :class:`XcodecFeatureExtractor` pads audio for X-Codec the way Transformers'
  ``DacFeatureExtractor`` does (X-Codec's published checkpoints use that extractor).

The filterbank math lives in :mod:`xcodec.fbank` (re-exported here: ``kaldi_fbank``,
``kaldi_mel_banks``, ``KALDI_WAVEFORM_SCALE``); this module holds the padding rules, the
extractor classes and their ``preprocessor_config.json`` I/O.

Padding rules, pinned by ``tests/test_features.py::test_matches_reference_extractor``:

X-Codec2 (``Xcodec2FeatureExtractor``), an item of ``n`` samples in a batch:
    ``padded_length(n) = ceil((n + 1) / hop_length) * hop_length``; ``input_values`` has
    ``max(padded_length(n_i))`` samples, the item's audio then zeros; ``padding_mask`` is 1
    on the first ``n + 1`` samples. The item's filterbank is taken over its first
    ``padded_length(n)`` samples with ``hop_length // 2`` zeros added on both sides, which
    for the defaults gives ``2 * padded_length(n) / hop_length`` frames.
X-Codec (``XcodecFeatureExtractor``):
    every item is zero-padded to ``ceil(max(n_i) / hop_length) * hop_length``; ``padding_mask``
    is 1 on the item's own ``n`` samples.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from xcodec.configs.base import ConfigBase, ConfigError
from xcodec.errors import ArgumentError, AudioError
from xcodec.fbank import KALDI_WAVEFORM_SCALE, kaldi_fbank, kaldi_mel_banks
from xcodec.registry import resolve_location

__all__ = [
    "KALDI_WAVEFORM_SCALE",
    "PREPROCESSOR_CONFIG_NAME",
    "BatchFeature",
    "NeuCodecFeatureExtractor",
    "Xcodec2FeatureExtractor",
    "XcodecFeatureExtractor",
    "kaldi_fbank",
    "kaldi_mel_banks",
]

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"

# Added to the per-bin variance before the square root in per-utterance normalisation.
NORMALISATION_EPSILON = 1e-7


class BatchFeature(dict[str, Any]):
    """The extractor's output: a dict of batched tensors, also readable as attributes.

    ``.to(device)`` moves every tensor; ``.to(dtype)`` or ``.to(device, dtype)`` casts only
    the floating tensors, so masks keep their integer type (as Transformers' BatchFeature).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(
        self,
        device: str | torch.device | torch.dtype | None = None,
        dtype: torch.dtype | None = None,
        *,
        non_blocking: bool = False,
    ) -> BatchFeature:
        """Return a copy with tensors on ``device`` and floating tensors cast to ``dtype``."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        moved = BatchFeature()
        for name, value in self.items():
            if not isinstance(value, torch.Tensor):
                moved[name] = value
            elif torch.is_floating_point(value):
                moved[name] = value.to(device=device, dtype=dtype, non_blocking=non_blocking)
            else:
                moved[name] = value.to(device=device, non_blocking=non_blocking)
        return moved


# --------------------------------------------------------------------------------------
# Input checking shared by both extractors
# --------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _split_batch(audio: Any) -> list[Any]:
    """A single waveform or a list of them -> a list of items."""
    if isinstance(audio, (list, tuple)):
        if len(audio) == 0:
            raise AudioError("got an empty list of audio")
        if all(_is_number(v) for v in audio):
            return [audio]
        return list(audio)
    return [audio]


def _item_to_tensor(item: Any, index: int, device: torch.device | None) -> torch.Tensor:
    """One waveform -> a 1-D float32 tensor; raise AudioError naming the item otherwise."""
    if isinstance(item, torch.Tensor):
        tensor = item
    elif isinstance(item, np.ndarray):
        # Through a contiguous native-endian copy: torch cannot wrap reversed or byte-swapped views.
        native = item.dtype.newbyteorder("=")
        tensor = torch.from_numpy(
            np.ascontiguousarray(item, dtype=np.float32 if item.dtype.kind == "f" else native)
        )
    elif isinstance(item, (list, tuple)) and all(_is_number(v) for v in item):
        tensor = torch.tensor(item, dtype=torch.float64)
    else:
        raise AudioError(
            f"audio item {index}: expected a numpy array or torch tensor, got {type(item).__name__}"
        )
    if not (tensor.is_floating_point()):
        raise AudioError(
            f"audio item {index} has dtype {tensor.dtype}; pass float audio in [-1, 1] "
            "(xcodec.audio.as_waveform converts integer PCM)"
        )
    if tensor.dim() == 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() == 2:
        raise AudioError(
            f"audio item {index} has shape {tuple(tensor.shape)}, read as (channels, samples) with "
            f"{tensor.shape[0]} channels; the codec takes mono audio: mix it down with "
            "xcodec.audio.to_mono, or pass a list of 1-D waveforms for a batch"
        )
    if tensor.dim() != 1:
        raise AudioError(f"audio item {index} has shape {tuple(tensor.shape)}; expected (samples,)")
    if tensor.numel() == 0:
        raise AudioError(f"audio item {index} is empty (0 samples)")
    if not bool(torch.isfinite(tensor).all()):
        raise AudioError(f"audio item {index} contains NaN or infinite samples")
    return tensor.to(device=device, dtype=torch.float32)


def _check_sampling_rate(sampling_rate: int | None, expected: int) -> None:
    if sampling_rate is not None and sampling_rate != expected:
        raise AudioError(
            f"audio at {sampling_rate} Hz, but this codec takes {expected} Hz: resample it first "
            f"(xcodec.audio.resample, or xcodec.audio.load_audio(path, target_sample_rate={expected}))"
        )


def _default_device(items: Sequence[Any], device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = items[0]
    return first.device if isinstance(first, torch.Tensor) else torch.device("cpu")


def _pad_batch(items: Sequence[torch.Tensor], total_length: int, value: float) -> torch.Tensor:
    """Right-pad 1-D tensors to ``total_length``: (batch, total_length)."""
    out = items[0].new_full((len(items), total_length), value)
    for row, item in zip(out, items, strict=True):
        row[: item.numel()] = item
    return out


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _select_audio(audio: Any, raw_audio: Any) -> Any:
    """The waveform(s) from ``audio=`` or ``raw_audio=`` (Transformers' extractors name it either way)."""
    if audio is not None and raw_audio is not None:
        raise AudioError("pass the waveform(s) as audio= or raw_audio=, not both")
    if audio is None and raw_audio is None:
        raise AudioError("no audio given: pass the waveform(s) as audio= (or raw_audio=)")
    return audio if audio is not None else raw_audio


# Values of ``padding=`` and the strategy each selects (Transformers' PaddingStrategy names).
_PADDING_STRATEGIES: dict[object, str] = {
    True: "longest",
    "longest": "longest",
    "max_length": "max_length",
    False: "do_not_pad",
    "do_not_pad": "do_not_pad",
}


def _padding_plan(
    lengths: Sequence[int], padding: bool | str, max_length: int | None, truncation: bool, multiple: int
) -> tuple[list[int], int | None]:
    """Each item's length after truncation, and the padded batch length (None: do not pad).

    The rules of Transformers' ``SequenceFeatureExtractor.pad`` with ``pad_to_multiple_of``:
    truncation cuts items to ``max_length`` rounded up to ``multiple``; "longest" pads to the
    longest item rounded up to ``multiple``, "max_length" to ``max_length`` rounded up
    (an item still longer is an error unless ``truncation``).
    """
    strategy = _PADDING_STRATEGIES.get(padding) if isinstance(padding, (bool, str)) else None
    if strategy is None:
        raise AudioError(f"padding must be True, 'longest', 'max_length' or False, got {padding!r}")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise AudioError(f"max_length must be a positive number of samples, got {max_length!r}")
    if (truncation or strategy == "max_length") and max_length is None:
        needs = "truncation=True" if truncation else "padding='max_length'"
        raise AudioError(f"{needs} needs max_length (in samples)")
    kept = list(lengths)
    if truncation:
        assert max_length is not None
        limit = _round_up(max_length, multiple)
        kept = [min(n, limit) for n in kept]
    if strategy == "do_not_pad":
        return kept, None
    if strategy == "longest":
        return kept, _round_up(max(kept), multiple)
    assert max_length is not None
    total = _round_up(max_length, multiple)
    for index, n in enumerate(kept):
        if n > total:
            raise AudioError(
                f"audio item {index} is {n} samples long, more than padding='max_length' allows "
                f"({total}, max_length={max_length} rounded up to a multiple of {multiple}); "
                "pass truncation=True to cut it or a larger max_length"
            )
    return kept, total


def _finish(outputs: dict[str, torch.Tensor], return_tensors: str | None) -> BatchFeature:
    if return_tensors is None or return_tensors == "pt":
        return BatchFeature(outputs)
    if return_tensors == "np":
        return BatchFeature({k: v.cpu().numpy() for k, v in outputs.items()})
    raise ArgumentError(f"return_tensors must be 'pt' or 'np', not {return_tensors!r}")


# --------------------------------------------------------------------------------------
# Config plumbing shared by both extractors
# --------------------------------------------------------------------------------------

E = TypeVar("E", bound="_PreprocessorConfig")


@dataclasses.dataclass
class _PreprocessorConfig(ConfigBase):
    """Fields and file I/O of a ``preprocessor_config.json``."""

    # Class name Transformers records (and dispatches on) in ``feature_extractor_type``.
    feature_extractor_type: ClassVar[str] = ""

    # Fields both extractors share; subclasses re-declare those whose defaults differ.
    feature_size: int = 1
    sampling_rate: int = 16000
    padding_value: float = 0.0
    padding_side: str = "right"
    return_attention_mask: bool = True
    hop_length: int = 320

    @classmethod
    def from_dict(cls: type[E], values: dict[str, Any]) -> E:
        values = dict(values)
        given = values.pop("feature_extractor_type", None)
        if given is not None and given != cls.feature_extractor_type:
            raise ConfigError(
                f"{cls.__name__} reads a {cls.feature_extractor_type} preprocessor config, this one "
                f"is for {given}"
            )
        return super().from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["feature_extractor_type"] = self.feature_extractor_type
        return out

    @classmethod
    def from_pretrained(
        cls: type[E],
        id_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
    ) -> E:
        """Read ``preprocessor_config.json`` from a local folder (or the file itself) or a hub repo.

        A checkpoint without that file gets the defaults, which are those of the published
        checkpoints.
        """
        # Hub resolution is I/O of xcodec.checkpoints, reached through the registry.
        location = resolve_location(
            id_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        path = location if location.is_file() else location / PREPROCESSOR_CONFIG_NAME
        if not path.exists():
            return cls()
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``preprocessor_config.json`` into ``folder`` (created if needed); return its path."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        path = target / PREPROCESSOR_CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def _check_common(self) -> None:
        if self.padding_side != "right":
            raise ConfigError(f"only right padding is supported, the config asks for {self.padding_side!r}")
        if self.hop_length <= 0:
            raise ConfigError(f"hop_length must be positive, got {self.hop_length}")


# --------------------------------------------------------------------------------------
# X-Codec2
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Xcodec2FeatureExtractor(_PreprocessorConfig):
    """X-Codec2 inputs: padded audio for the acoustic encoder, stacked log-mel for the semantic one.

    Fields are those of the reference's ``preprocessor_config.json``. The reference
    hard-codes ``stride``, ``num_mel_bins``, ``frame_length`` and ``frame_shift``; here they
    are read from the config, with the same defaults.
    """

    feature_extractor_type: ClassVar[str] = "Xcodec2FeatureExtractor"

    feature_size: int = 80
    # Fills the mel features of padded frames (audio padding is always 0.0).
    padding_value: float = 1.0
    stride: int = 2
    num_mel_bins: int = 80
    frame_length: int = 400
    frame_shift: int = 160

    def __post_init__(self) -> None:
        self._check_common()

    def padded_length(self, num_samples: int) -> int:
        """Samples an item of ``num_samples`` occupies after padding: ``ceil((n + 1) / hop) * hop``.

        Reference quirk ("always pad 1..hop_length samples"): the reference appends one zero
        to every item before rounding up to a multiple of ``hop_length``, so audio that is
        already a multiple of the hop still gets a whole extra hop of zeros (and one more
        code frame). Pinned by ``test_padding_rule`` and ``test_matches_reference_extractor``.
        """
        return _round_up(num_samples + 1, self.hop_length)

    def fbank_edge_padding(self) -> int:
        """Zeros added on each side of an item's padded audio before its filterbank: hop // 2.

        NeuCodec's extractor adds none (:class:`NeuCodecFeatureExtractor`).
        """
        return self.hop_length // 2

    def num_frames(self, num_samples: int) -> int:
        """Filterbank frames (before stacking) of an item of ``num_samples``."""
        window_input = self.padded_length(num_samples) + 2 * self.fbank_edge_padding()
        return 1 + (window_input - self.frame_length) // self.frame_shift

    def __call__(
        self,
        audio: Any = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        device: str | torch.device | None = None,
        *,
        raw_audio: Any = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> BatchFeature:
        """Pad a batch and compute its features.

        audio (or raw_audio, its name on the older X-Codec2 page): one mono waveform,
            (samples,) or (1, samples), numpy or torch, float in [-1, 1] at
            ``sampling_rate`` Hz; or a list of them of any lengths.
        sampling_rate: the audio's rate; None means it is already ``self.sampling_rate``.
        return_tensors: "pt" (also for None, as Transformers' X-Codec2 extractor) or "np".
        device: where to compute and return; None: the first input's device (CPU for numpy).
        padding: True or "longest" (the default): pad to the longest item; "max_length":
            pad to ``max_length`` samples (rounded up to a multiple of ``hop_length``).
            False is refused, as it fails in Transformers: the model needs the padding.
        max_length, truncation: with ``truncation=True`` each item (with its "always pad"
            sample) is cut to ``max_length`` rounded up to a multiple of ``hop_length``.

        Returns a :class:`BatchFeature` with

        - ``input_values``: (batch, 1, samples) float32, each item followed by zeros;
        - ``padding_mask``: (batch, samples) int32, 1 on the item's samples plus one;
        - ``input_features``: (batch, samples // hop_length, num_mel_bins * stride) float32,
          ``padding_value`` on padded frames;
        - ``input_features_mask``: (batch, samples // hop_length) int32.

        ``input_values`` and ``padding_mask`` equal Transformers' for every ``padding``,
        ``max_length`` and ``truncation``. Deviation, on purpose: with ``padding="max_length"``
        Transformers pads the features to ``max_length`` rows too (it reads the sample count
        as a frame count), which its model cannot use; here they have one row per code
        frame of the padded audio, as with the other strategies.
        """
        _check_sampling_rate(sampling_rate, self.sampling_rate)
        raw_items = _split_batch(_select_audio(audio, raw_audio))
        if isinstance(padding, (bool, str)) and _PADDING_STRATEGIES.get(padding) == "do_not_pad":
            raise AudioError(
                "padding=False: X-Codec2 takes audio padded to a multiple of hop_length "
                f"({self.hop_length}) with its padding mask (Transformers' extractor fails on it too); "
                "use padding=True (the default) or padding='max_length' with max_length"
            )
        target = _default_device(raw_items, device)
        items = [_item_to_tensor(item, index, target) for index, item in enumerate(raw_items)]
        lengths = [item.numel() for item in items]

        # Acoustic input: padded_length(n) = ceil((n + 1) / hop) * hop (see padded_length for
        # the quirk): the appended zero counts as a real sample, in the mask and in truncation.
        counts, total_length = _padding_plan(
            [n + 1 for n in lengths], padding, max_length, truncation, self.hop_length
        )
        assert total_length is not None
        kept = [item[:count] for item, count in zip(items, counts, strict=True)]
        input_values = _pad_batch(kept, total_length, 0.0)
        sample_index = torch.arange(total_length, device=target)
        padding_mask = (sample_index < torch.tensor(counts, device=target)[:, None]).to(torch.int32)

        # An item whose mask counts c samples is featurised as one of c - 1 samples plus
        # its appended zero (its first padded_length(c - 1) = ceil(c / hop) * hop samples).
        features, frame_mask = self._semantic_features(input_values, [count - 1 for count in counts])
        return _finish(
            {
                "input_values": input_values[:, None, :],
                "padding_mask": padding_mask,
                "input_features": features,
                "input_features_mask": frame_mask,
            },
            return_tensors,
        )

    def features_from_padded(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``input_features`` and ``input_features_mask`` :meth:`__call__` makes, from its padded audio.

        input_values: (batch, 1, samples) or (batch, samples) float, as ``__call__`` returns
            it (samples a multiple of ``hop_length``).
        padding_mask: (batch, samples) or (batch, 1, samples), 1 on each item's samples
            (``__call__``'s mask); None: every item fills the batch.
        Returns (batch, samples // hop_length, num_mel_bins * stride) float32 features and
        their (batch, samples // hop_length) int32 mask, on the audio's device; equal to
        ``__call__``'s for the same audio, since an item's features depend only on its
        first ``padded_length`` samples.
        """
        batch = input_values.shape[0]
        waveforms = input_values.reshape(batch, -1).float()
        num_samples = waveforms.shape[-1]
        if num_samples == 0 or num_samples % self.hop_length:
            raise AudioError(
                f"input_values has {num_samples} samples, not a positive multiple of hop_length "
                f"({self.hop_length}); pad it with the feature extractor"
            )
        if padding_mask is None:
            counts = [num_samples] * batch
        else:
            counts = padding_mask.reshape(batch, -1).to(torch.long).sum(dim=-1).tolist()
            if min(counts) < 1:
                raise AudioError(f"padding_mask marks no sample of item {counts.index(min(counts))}")
        return self._semantic_features(waveforms, [count - 1 for count in counts])

    def _semantic_features(
        self, input_values: torch.Tensor, lengths: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) padded audio and each item's own length -> stacked normalised
        log-mel (batch, rows, stride * num_mel_bins) and its row mask (batch, rows)."""
        batch, _ = input_values.shape
        device = input_values.device
        # Each item's filterbank sees its own padded_length(n) samples centred by hop // 2
        # zeros per side. Samples past that are zeros in input_values too, so one fbank over
        # the whole batch gives every item its own frames; later frames are discarded.
        edge = self.fbank_edge_padding()
        waveforms = F.pad(input_values * KALDI_WAVEFORM_SCALE, (edge, edge))
        log_mel = kaldi_fbank(
            waveforms,
            sample_rate=self.sampling_rate,
            num_mel_bins=self.num_mel_bins,
            frame_length=self.frame_length,
            frame_shift=self.frame_shift,
            high_freq=float(self.sampling_rate // 2),
        )  # (batch, frames, num_mel_bins)
        frames_per_item = torch.tensor([self.num_frames(n) for n in lengths], device=device)
        num_frames = log_mel.shape[1]
        valid = torch.arange(num_frames, device=device)[None, :] < frames_per_item[:, None]  # (batch, frames)

        # Per-utterance, per-bin mean and unbiased variance over each item's own frames.
        count = frames_per_item.to(log_mel.dtype)[:, None, None]
        keep = valid[:, :, None]
        mean = torch.where(keep, log_mel, 0.0).sum(dim=1, keepdim=True) / count
        centred = torch.where(keep, log_mel - mean, 0.0)
        variance = centred.square().sum(dim=1, keepdim=True) / (count - 1).clamp_min(1)
        normalised = (log_mel - mean) / torch.sqrt(variance + NORMALISATION_EPSILON)
        normalised = torch.where(keep, normalised, self.padding_value)

        # Pad the frame axis to a multiple of the stride, then stack `stride` frames per row.
        stacked_frames = _round_up(num_frames, self.stride)
        extra = stacked_frames - num_frames
        normalised = F.pad(normalised, (0, 0, 0, extra), value=self.padding_value)
        frame_mask = F.pad(valid.to(torch.int32), (0, extra))
        rows = stacked_frames // self.stride
        features = normalised.reshape(batch, rows, self.stride * self.num_mel_bins)
        # A stacked row is valid only if all its frames are.
        row_mask = frame_mask.reshape(batch, rows, self.stride).amin(dim=-1)
        return features, row_mask


@dataclasses.dataclass
class NeuCodecFeatureExtractor(Xcodec2FeatureExtractor):
    """NeuCodec inputs: X-Codec2's, except that the filterbank gets no edge padding.

    Quirk "code count" (NeuCodec's reference and Transformers' ``NeuCodecFeatureExtractor``):
    the fbank runs on the item's ``padded_length(n)`` samples as they are, without
    X-Codec2's ``hop // 2`` zeros on each side, so an item gets ``padded_length(n) / hop - 1``
    stacked feature rows, one fewer than its acoustic frames; the model then trims the
    acoustic frames to match (16,000 samples -> 50 codes). Pinned by
    ``tests/test_neucodec.py::test_code_count_quirk``.
    """

    feature_extractor_type: ClassVar[str] = "NeuCodecFeatureExtractor"

    def fbank_edge_padding(self) -> int:
        return 0


# --------------------------------------------------------------------------------------
# X-Codec
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class XcodecFeatureExtractor(_PreprocessorConfig):
    """X-Codec inputs: audio zero-padded to a multiple of the hop, as ``DacFeatureExtractor``.

    The published ``hf-audio/xcodec-*`` checkpoints ship a ``DacFeatureExtractor`` config
    with ``hop_length`` equal to the acoustic model's total downsampling (320 at 16 kHz).
    """

    feature_extractor_type: ClassVar[str] = "DacFeatureExtractor"

    def __post_init__(self) -> None:
        self._check_common()
        if self.feature_size != 1:
            raise ConfigError(f"only mono audio (feature_size 1) is supported, got {self.feature_size}")

    def __call__(
        self,
        raw_audio: Any = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        device: str | torch.device | None = None,
        *,
        audio: Any = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> BatchFeature:
        """Pad a batch of mono waveforms to a common multiple of ``hop_length``, as ``DacFeatureExtractor``.

        raw_audio (or audio): one waveform, (samples,) or (1, samples), or a list of them.
        return_tensors: "pt" (also for None) or "np".
        padding: True or "longest" (the default): pad to the longest item rounded up to a
            multiple of ``hop_length``; "max_length": to ``max_length`` rounded up; False:
            no padding and no ``padding_mask``, so the items must be equally long.
        max_length, truncation: with ``truncation=True`` items are cut to ``max_length``
            rounded up to a multiple of ``hop_length``.

        Returns ``input_values`` (batch, 1, samples) float32 and, when padding,
        ``padding_mask`` (batch, samples) int32, 1 on each item's own samples.
        """
        _check_sampling_rate(sampling_rate, self.sampling_rate)
        raw_items = _split_batch(_select_audio(audio, raw_audio))
        target = _default_device(raw_items, device)
        items = [_item_to_tensor(item, index, target) for index, item in enumerate(raw_items)]
        kept, total_length = _padding_plan(
            [item.numel() for item in items], padding, max_length, truncation, self.hop_length
        )
        items = [item[:n] for item, n in zip(items, kept, strict=True)]
        if total_length is None:
            if len(set(kept)) > 1:
                raise AudioError(
                    f"padding=False needs items of one length, got lengths {kept}; "
                    "use padding=True to pad them (the padding_mask then marks each item's samples)"
                )
            return _finish({"input_values": torch.stack(items)[:, None, :]}, return_tensors)
        input_values = _pad_batch(items, total_length, self.padding_value)
        lengths = torch.tensor(kept, device=target)
        padding_mask = (torch.arange(total_length, device=target)[None, :] < lengths[:, None]).to(torch.int32)
        return _finish(
            {"input_values": input_values[:, None, :], "padding_mask": padding_mask}, return_tensors
        )
