"""The interface every codec in the package implements.

The CLI, :func:`xcodec.load` and the dataset tokenizer only talk to this interface, so
X-Codec and X-Codec2 are interchangeable there (the idea of Mimi's ``CompressionModel``).
Model-specific ``encode``/``decode``/``forward`` keep the Transformers argument and
field names; ``tokenize``/``detokenize`` below take plain waveforms and lengths.
"""

from __future__ import annotations

import abc
import dataclasses

import torch
from torch import nn

__all__ = ["CodecModel", "DetokenizeResult", "TokenizeResult"]


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


class CodecModel(nn.Module, abc.ABC):
    """A neural audio codec: mono waveform at ``sample_rate`` <-> integer codes at ``frame_rate``."""

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Sampling rate in Hz of the audio the codec takes and returns."""

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

    @abc.abstractmethod
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Encode a padded batch of mono waveforms.

        waveforms: (batch, samples) float at ``sample_rate``, zero-padded past ``lengths``.
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
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
