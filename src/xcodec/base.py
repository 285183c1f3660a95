"""The interface every codec in the package implements.

The CLI, :func:`xcodec.load` and the dataset tokenizer only talk to this interface, so
X-Codec and X-Codec2 are interchangeable there (the idea of Mimi's ``CompressionModel``).
Model-specific ``encode``/``decode``/``forward`` keep the Transformers argument and
field names; ``tokenize``/``detokenize`` below take plain waveforms and lengths.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from xcodec import registry
from xcodec.errors import ArgumentError, XcodecError

if TYPE_CHECKING:
    from xcodec.placement import DeviceMap, DtypeArg

__all__ = ["PARTS", "CodecModel", "DetokenizeResult", "PretrainedMixin", "TokenizeResult"]

P = TypeVar("P", bound="PretrainedMixin")

# What a model may be loaded for: both directions, or only one (``parts=`` of from_pretrained).
PARTS = ("all", "encoder", "decoder")


@dataclasses.dataclass
class TokenizeResult:
    """Codes of a batch.

    audio_codes: (batch, num_codebooks, frames) int64, 0 past each item's length.
    code_lengths: (batch,) int64, the number of valid frames of each item.
    """

    audio_codes: torch.Tensor
    code_lengths: torch.Tensor


@dataclasses.dataclass
class DetokenizeResult:
    """Audio of a batch.

    audio: (batch, samples) float, 0 past each item's length.
    lengths: (batch,) int64, the number of valid samples of each item.
    """

    audio: torch.Tensor
    lengths: torch.Tensor


class PretrainedMixin:
    """``from_pretrained``/``save_pretrained`` through the loader registry (:mod:`xcodec.registry`).

    The model classes do no I/O: the loader and saver registered for the class (by
    :mod:`xcodec.checkpoints`) resolve the hub id, read the layout, map the keys and fold
    weight norm. So the models never import the loaders, and every codec takes the same
    loading arguments.
    """

    @classmethod
    def from_pretrained(
        cls: type[P],
        id_or_path: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        device_map: DeviceMap = None,
        dtype: DtypeArg = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        parts: str = "all",
        **model_kwargs: Any,
    ) -> P:
        """Load a checkpoint (local folder or file, or hub id) in any layout the codec knows, strictly.

        device_map, dtype: as Transformers' (``"auto"`` included), see :mod:`xcodec.placement`.
        parts: "all", or "encoder" / "decoder" to keep only what that direction needs (see
        :class:`CodecModel`). model_kwargs: options of one codec (NeuCodec:
        ``semantic_model``, where the original layout's W2V-BERT weights come from).
        The model comes back in eval mode.
        """
        model = registry.codec_loader(cls)(
            cls,
            id_or_path,
            device=device,
            device_map=device_map,
            dtype=dtype,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            parts=parts,
            **model_kwargs,
        )
        if not isinstance(model, cls):
            raise XcodecError(f"{id_or_path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write the Transformers layout (config.json, model.safetensors, preprocessor_config.json)."""
        registry.codec_saver(type(self))(self, Path(folder))


class CodecModel(PretrainedMixin, nn.Module, abc.ABC):
    """A neural audio codec: mono waveform at ``sample_rate`` <-> integer codes at ``frame_rate``.

    Parts: a model can be loaded for one direction only (``from_pretrained(...,
    parts="encoder")``), keeping just the submodules that direction needs
    (``part_modules``): a corpus tokenizer never runs the decoder, a TTS system never
    runs the encoder. For X-Codec2 that is 442 M of 629 M parameters to encode and 187 M
    to decode, 1.65 or 0.70 GiB in float32 instead of 2.34.
    """

    # Names of the child modules each direction needs; the others are dropped for it.
    part_modules: ClassVar[dict[str, tuple[str, ...]]] = {}
    loaded_parts: str = "all"
    # True when ``tokenize``/``detokenize`` give each item of a padded batch exactly what it
    # gets alone, so callers may batch items of different lengths (xcodec.api, the tokenizer).
    batch_invariant: ClassVar[bool] = False
    # The typed dataclass config the model was built from (xcodec.configs); None only for
    # test doubles that have none.
    config: Any = None

    def drop_unused_parts(self, parts: str) -> tuple[str, ...]:
        """Keep only the child modules ``parts`` ("all", "encoder", "decoder") needs.

        Returns the state-dict prefixes of the dropped modules (``"name."``), which a
        loader leaves out of its strict check.
        """
        if parts not in PARTS:
            raise ArgumentError(f"parts must be one of {PARTS}, got {parts!r}")
        if parts == "all":
            return ()
        keep = set(self.part_modules[parts])
        dropped = tuple(name for name, _ in self.named_children() if name not in keep)
        for name in dropped:
            setattr(self, name, None)
        self.loaded_parts = parts
        return tuple(f"{name}." for name in dropped)

    def require_part(self, part: str) -> None:
        """Raise a clear error if this model was loaded without ``part`` ("encoder" or "decoder")."""
        if self.loaded_parts not in ("all", part):
            raise XcodecError(
                f"this model was loaded with parts={self.loaded_parts!r}, so it cannot run the {part}; "
                f"load it with parts='all' or parts={part!r}"
            )

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Sampling rate in Hz of the audio the codec returns (and takes, see ``input_sample_rate``)."""

    @property
    def input_sample_rate(self) -> int:
        """Sampling rate in Hz of the audio ``tokenize`` takes: ``sample_rate`` unless the codec
        changes rate (NeuCodec: 16 kHz in, 24 kHz out). ``hop_length`` and ``frame_rate``
        are in the output domain."""
        return self.sample_rate

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Audio samples per code frame."""

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    @abc.abstractmethod
    def num_codebooks(self) -> int:
        """The most codebooks a frame can carry (X-Codec: chosen by bandwidth)."""

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int:
        """Number of distinct values of one code."""

    @property
    def bandwidths(self) -> tuple[float, ...]:
        """Bandwidths in kbps ``tokenize(..., bandwidth=)`` accepts; empty: no choice (it is ignored)."""
        return ()

    @property
    def input_hop_length(self) -> int:
        """Input samples (at ``input_sample_rate``) per code frame."""
        return self.hop_length * self.input_sample_rate // self.sample_rate

    def frames_for(self, num_samples: int) -> int:
        """Code frames ``tokenize`` gives an item of ``num_samples`` samples at ``input_sample_rate``.

        Default ``ceil(num_samples / input_hop_length)``; codecs with another count override
        it (X-Codec2's "always pad" quirk adds one).
        """
        return math.ceil(num_samples / self.input_hop_length)

    def check_bandwidth(self, bandwidth: float | None) -> None:
        """Raise :class:`~xcodec.errors.ArgumentError` naming ``bandwidth`` unless this codec takes it.

        None (the highest) is always accepted; codecs without a choice ignore any value.
        """
        if bandwidth is None or not self.bandwidths:
            return
        if float(bandwidth) not in self.bandwidths:
            raise ArgumentError(
                f"bandwidth={bandwidth:g} kbps is not one this model offers: "
                + ", ".join(f"{b:g}" for b in self.bandwidths)
            )

    @abc.abstractmethod
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Encode a padded batch of mono waveforms.

        waveforms: (batch, samples) float at ``input_sample_rate``, zero-padded past ``lengths``.
        lengths: (batch,) valid samples of each item; None means all are full length.
        bandwidth: kbps for codecs with a choice of codebook count; None picks the highest.
        """

    @abc.abstractmethod
    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        """Decode a padded batch of codes, (batch, num_codebooks, frames), to audio."""

    @property
    def device(self) -> torch.device:
        """The device of the parameters (where inputs go: ``inputs.to(model.device, model.dtype)``)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the parameters."""
        return next(self.parameters()).dtype
