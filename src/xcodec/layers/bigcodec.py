"""BigCodec's convolutional waveform encoder (X-Codec2's acoustic encoder).

A 7-tap stem, then one block per downsampling ratio (three dilated residual units, an
anti-aliased SnakeBeta, a strided conv that doubles the channels), then a final
activation and a 3-tap projection. (batch, 1, samples) -> (batch, hidden, samples / hop).
Attribute names follow the Transformers layout (``conv1``, ``block.N.res_unit1`` ...).

Every ``forward`` takes optional per-item ``lengths`` (batch,) of valid input steps: then
padding is zeroed before each zero-padded conv and the anti-aliasing filters replicate
each item's last valid step, so the valid outputs equal each item's alone-run (batch
invariance); ``lengths=None`` is the plain (reference) computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from xcodec.layers.alias_free import AntiAliasedActivation1d
from xcodec.layers.masking import conv1d_output_lengths, zero_padding

__all__ = ["AcousticEncoder", "EncoderBlock", "ResidualUnit"]


class ResidualUnit(nn.Module):
    """act -> dilated conv7 -> act -> conv1, plus the input: (batch, C, T) -> (batch, C, T)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.snake1 = AntiAliasedActivation1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.snake2 = AntiAliasedActivation1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # Every stage keeps the length, so the reference's "crop the skip to the branch
        # length" step never fires and is left out. conv2 has one tap: no border to hide.
        branch = self.conv1(zero_padding(self.snake1(x, lengths), lengths))
        return x + self.conv2(self.snake2(branch, lengths))


class EncoderBlock(nn.Module):
    """Residual units at dilations 1, 3, 9, then a strided conv: (batch, C, T) -> (batch, 2C, T / stride)."""

    def __init__(self, in_channels: int, stride: int) -> None:
        super().__init__()
        self.res_unit1 = ResidualUnit(in_channels, dilation=1)
        self.res_unit2 = ResidualUnit(in_channels, dilation=3)
        self.res_unit3 = ResidualUnit(in_channels, dilation=9)
        self.snake1 = AntiAliasedActivation1d(in_channels)
        self.conv1 = nn.Conv1d(
            in_channels, 2 * in_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, C, T); valid outputs: :meth:`output_lengths` of ``lengths``."""
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            x = unit(x, lengths)
        return self.conv1(zero_padding(self.snake1(x, lengths), lengths))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv1d_output_lengths(self.conv1, lengths)


class AcousticEncoder(nn.Module):
    """(batch, 1, samples) -> (batch, hidden_size, samples / prod(ratios)); samples must divide evenly."""

    def __init__(self, base_channels: int, ratios: Sequence[int], hidden_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, base_channels, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            EncoderBlock(base_channels * 2**index, stride) for index, stride in enumerate(ratios)
        )
        out_channels = base_channels * 2 ** len(ratios)
        self.snake1 = AntiAliasedActivation1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, hidden_size, kernel_size=3, padding=1)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """waveform: (batch, 1, samples); lengths: (batch,) valid samples or None.

        Returns (batch, hidden_size, frames); valid frames per item: :meth:`output_lengths`.
        """
        x = self.conv1(zero_padding(waveform, lengths))
        for block in self._blocks():
            x = block(x, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return self.conv2(zero_padding(self.snake1(x, lengths), lengths))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames an item of ``lengths`` samples gets alone (every conv after the blocks keeps length)."""
        for block in self._blocks():
            lengths = block.output_lengths(lengths)
        return lengths

    def _blocks(self) -> list[EncoderBlock]:
        return [cast(EncoderBlock, block) for block in self.block]
