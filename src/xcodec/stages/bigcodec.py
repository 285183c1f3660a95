"""BigCodec's convolutional waveform encoder (X-Codec2's acoustic encoder).

A 7-tap stem, then one block per downsampling ratio (three dilated residual units, an
anti-aliased SnakeBeta, a strided conv that doubles the channels), then a final
activation and a 3-tap projection. (batch, 1, samples) -> (batch, hidden, samples / hop).
Attribute names follow the Transformers layout (``conv1``, ``block.N.res_unit1`` ...).

Every ``forward`` takes optional per-item ``lengths`` (batch,) of valid input steps: then
padding is zeroed before each zero-padded conv and the anti-aliasing filters replicate
each item's last valid step, so the valid outputs equal each item's alone-run (batch
invariance); ``lengths=None`` is the plain (reference) computation.

The stem and the leading blocks, which run at 1/64 of the audio rate or faster, go
through :func:`xcodec.ops.chunking.run_chunked` in time chunks of
``chunk_samples`` (with a halo wider than their reach, :meth:`AcousticEncoder.leading_reach`),
the rest whole: same outputs up to float summation order, a fraction of the memory, and
no page-fault storm on long inputs (measured in bench/RESULTS.md). Activations are
stored time-major throughout (:mod:`xcodec.ops.layout`), for the CPU's
channels-last convolution kernels; the output is too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from xcodec.layers.alias_free import AntiAliasedActivation1d
from xcodec.ops.chunking import chunked_prefix, conv_reach, run_strided_stage, stack_reach
from xcodec.ops.layout import conv1d_time_major
from xcodec.ops.masking import conv1d_output_lengths, zero_padding

__all__ = ["AcousticEncoder", "EncoderBlock", "ResidualUnit"]

# Blocks whose output runs at 1/64 of the audio rate or faster are run in time chunks.
# The next block (stride 5 -> 1/320) would widen the halo from 2 k to 8 k samples on
# each side, while its tensors are already small.
_CHUNKED_MAX_STRIDE = 64
# 32768 samples (2 s) of audio per chunk: the chunk's largest tensor (48 channels x 2
# phases x 35 k steps, 13 MB) stays under glibc's mmap threshold, and the 2 x 2048-sample
# halo adds 12% to the chunked blocks' work. 16 k and 64 k chunks measured no faster.
DEFAULT_CHUNK_SAMPLES = 32768
# The blocks after those run over 10 s of audio at a time (a 130-step halo at 1/64 rate
# adds 10% to their work); this bounds their memory on long windows at no measured cost.
DEFAULT_TRAILING_CHUNK_SAMPLES = 163840


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
        branch = conv1d_time_major(self.conv1, zero_padding(self.snake1(x, lengths), lengths))
        return x + conv1d_time_major(self.conv2, self.snake2(branch, lengths))

    def reach(self) -> int:
        """Input steps an output depends on, either side (conv2 has one tap)."""
        return self.snake1.reach() + conv_reach(self.conv1) + self.snake2.reach()


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
        return conv1d_time_major(self.conv1, zero_padding(self.snake1(x, lengths), lengths))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv1d_output_lengths(self.conv1, lengths)

    def reach(self) -> int:
        """Input steps an output depends on, either side of its position ``j * stride``."""
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        return sum(unit.reach() for unit in units) + self.snake1.reach() + conv_reach(self.conv1)


class AcousticEncoder(nn.Module):
    """(batch, 1, samples) -> (batch, hidden_size, samples / prod(ratios)); samples must divide evenly.

    Runs as two chunked stages (:func:`xcodec.ops.chunking.run_chunked`): the stem and
    the blocks down to 1/64 of the audio rate over ``chunk_samples`` of audio at a time,
    then the remaining blocks and the output conv over ``trailing_chunk_samples``, each
    with a halo wider than its reach. 0 runs a stage whole (tests shrink both to cross
    many chunk joins on short audio).
    """

    def __init__(
        self,
        base_channels: int,
        ratios: Sequence[int],
        hidden_size: int,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
        trailing_chunk_samples: int = DEFAULT_TRAILING_CHUNK_SAMPLES,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, base_channels, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            EncoderBlock(base_channels * 2**index, stride) for index, stride in enumerate(ratios)
        )
        out_channels = base_channels * 2 ** len(ratios)
        self.snake1 = AntiAliasedActivation1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, hidden_size, kernel_size=3, padding=1)
        self.chunk_samples = chunk_samples
        self.trailing_chunk_samples = trailing_chunk_samples
        self.num_chunked_blocks, self.chunked_stride = chunked_prefix(ratios, _CHUNKED_MAX_STRIDE)
        self.trailing_stride = math.prod(ratios) // self.chunked_stride

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """waveform: (batch, 1, samples); lengths: (batch,) valid samples or None.

        Returns (batch, hidden_size, frames); valid frames per item: :meth:`output_lengths`.
        """
        stride = self.chunked_stride
        x = run_strided_stage(
            self._leading,
            waveform,
            lengths,
            chunk=self.chunk_samples,
            stride=stride,
            reach=self.leading_reach(),
        )
        for block in self._blocks()[: self.num_chunked_blocks]:
            lengths = None if lengths is None else block.output_lengths(lengths)
        return run_strided_stage(
            self._trailing,
            x,
            lengths,
            chunk=self.trailing_chunk_samples // stride,
            stride=self.trailing_stride,
            reach=self.trailing_reach(),
        )

    def _leading(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The stem and the blocks down to 1/64 rate: (batch, 1, samples) -> (batch, C, samples / chunked_stride)."""
        x = conv1d_time_major(self.conv1, zero_padding(waveform, lengths))
        for block in self._blocks()[: self.num_chunked_blocks]:
            x = block(x, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return x

    def _trailing(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The remaining blocks and the output conv: (batch, C, steps) -> (batch, hidden, steps / trailing_stride)."""
        for block in self._blocks()[self.num_chunked_blocks :]:
            x = block(x, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return conv1d_time_major(self.conv2, zero_padding(self.snake1(x, lengths), lengths))

    def leading_reach(self) -> int:
        """Samples an output of :meth:`_leading` depends on, either side of its position."""
        return stack_reach(self._blocks()[: self.num_chunked_blocks], conv_reach(self.conv1))[0]

    def trailing_reach(self) -> int:
        """Input steps of :meth:`_trailing` an output depends on, either side of its position."""
        reach, rate = stack_reach(self._blocks()[self.num_chunked_blocks :])
        return reach + rate * (self.snake1.reach() + conv_reach(self.conv2))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames an item of ``lengths`` samples gets alone (every conv after the blocks keeps length)."""
        for block in self._blocks():
            lengths = block.output_lengths(lengths)
        return lengths

    def _blocks(self) -> list[EncoderBlock]:
        return [cast(EncoderBlock, block) for block in self.block]
