"""DAC (Descript Audio Codec) stages: residual units, encoder and decoder (Snake from :mod:`xcodec.layers.snake`).

Module and parameter names follow Transformers' ``DacEncoder``/``DacDecoder`` so that the
state-dict keys match; weight norm is not applied here (a checkpoint that carries it is
folded into plain ``.weight`` tensors at load time, see :mod:`xcodec.checkpoints.xcodec`).

Lengths: every residual unit keeps the time length ("same" padding); an encoder block
divides it by its stride, a decoder block multiplies it by its stride when
``odd_stride_output_padding`` is on (X-Codec's variant) or when all strides are even.

Padded batches: every ``forward`` takes optional ``lengths`` (batch,), the valid steps of
each item at that layer's input. With them the padding is zeroed before every
convolution that reaches past a step (kernel > 1), which is what an item alone sees
there, and the lengths follow each strided or transposed conv; each item's valid outputs
then equal its alone-run. ``None`` (every item full) runs the plain computation.

Speed (same outputs up to float summation order, pinned by tests/test_fast_paths.py):
activations are stored time-major for the CPU's channels-last convolutions
(:mod:`xcodec.ops.layout`); Snake runs in one buffer when no gradient is wanted; the
encoder's leading blocks (output at 1/64 of the audio rate or faster) and the decoder's
trailing blocks (input at 1/64 of the audio rate or faster) run in time chunks with
halos (:mod:`xcodec.ops.chunking`), so no layer makes a tensor the size of the whole
clip at the audio rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from xcodec.layers.snake import Snake1d
from xcodec.ops.chunking import chunked_prefix, conv_reach, run_chunked, run_strided_stage, stack_reach
from xcodec.ops.layout import conv1d_time_major, conv_transpose1d_time_major
from xcodec.ops.masking import conv1d_output_lengths, conv_transpose_output_lengths, zero_padding

__all__ = ["DacDecoder", "DacDecoderBlock", "DacEncoder", "DacEncoderBlock", "DacResidualUnit"]

# Stages at 1/64 of the audio rate or faster run in time chunks (see the module docstring).
_CHUNKED_MAX_STRIDE = 64
# Audio samples per chunk (rounded down to a multiple of the chunked stride): 2 s.
DEFAULT_CHUNK_SAMPLES = 32768


class DacResidualUnit(nn.Module):
    """Snake -> dilated conv (k7) -> Snake -> conv (k1), added to the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.snake1 = Snake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.snake2 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels, time) -> (batch, channels, time); lengths: (batch,) valid steps or None.

        DAC crops the skip path when the branch comes out shorter; with kernel 7 and
        padding 3·dilation it never does, so there is nothing to crop.
        """
        branch = conv1d_time_major(self.conv1, zero_padding(self.snake1(hidden_states), lengths))
        branch = conv1d_time_major(self.conv2, self.snake2(branch))
        return hidden_states + branch

    def reach(self) -> int:
        """Steps an output depends on, either side (Snake and conv2 are pointwise)."""
        return conv_reach(self.conv1)


class DacEncoderBlock(nn.Module):
    """Three residual units (dilation 1, 3, 9), Snake, then a strided conv doubling the channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.res_unit1 = DacResidualUnit(in_channels, dilation=1)
        self.res_unit2 = DacResidualUnit(in_channels, dilation=3)
        self.res_unit3 = DacResidualUnit(in_channels, dilation=9)
        self.snake1 = Snake1d(in_channels)
        self.conv1 = nn.Conv1d(
            in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, in_channels, time) -> (batch, out_channels, time // stride).

        lengths: (batch,) valid input steps or None; the output's are ``output_lengths(lengths)``.
        """
        hidden_states = self.res_unit1(hidden_states, lengths)
        hidden_states = self.res_unit2(hidden_states, lengths)
        hidden_states = self.res_unit3(hidden_states, lengths)
        return conv1d_time_major(self.conv1, zero_padding(self.snake1(hidden_states), lengths))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv1d_output_lengths(self.conv1, lengths)

    def reach(self) -> int:
        """Input steps an output depends on, either side of its position ``j * stride``."""
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        return sum(unit.reach() for unit in units) + conv_reach(self.conv1)


class DacEncoder(nn.Module):
    """Waveform (batch, 1, samples) -> latent (batch, hidden_size, frames)."""

    def __init__(
        self,
        encoder_hidden_size: int,
        downsampling_ratios: Sequence[int],
        hidden_size: int,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    ) -> None:
        super().__init__()
        width = encoder_hidden_size
        self.conv1 = nn.Conv1d(1, width, kernel_size=7, padding=3)
        blocks = []
        for stride in downsampling_ratios:
            blocks.append(DacEncoderBlock(width, 2 * width, stride))
            width *= 2
        self.block = nn.ModuleList(blocks)
        self.snake1 = Snake1d(width)
        self.conv2 = nn.Conv1d(width, hidden_size, kernel_size=3, padding=1)
        # Time chunk of the leading blocks in samples (0: run whole); tests shrink it.
        self.chunk_samples = chunk_samples
        self.num_chunked_blocks, self.chunked_stride = chunked_prefix(
            downsampling_ratios, _CHUNKED_MAX_STRIDE
        )

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, hidden_size, frames).

        lengths: (batch,) valid samples per item, or None; with them item i's first
        ``output_lengths(lengths)[i]`` frames equal its alone-run, later frames are unspecified.
        """
        hidden_states = run_strided_stage(
            self._leading,
            waveform,
            lengths,
            chunk=self.chunk_samples,
            stride=self.chunked_stride,
            reach=self.leading_reach(),
        )
        blocks = self._blocks()
        for block in blocks[: self.num_chunked_blocks]:
            lengths = None if lengths is None else block.output_lengths(lengths)
        for block in blocks[self.num_chunked_blocks :]:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return conv1d_time_major(self.conv2, zero_padding(self.snake1(hidden_states), lengths))

    def _leading(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The stem and the chunked blocks: (batch, 1, samples) -> (batch, C, samples / chunked_stride)."""
        hidden_states = conv1d_time_major(self.conv1, zero_padding(waveform, lengths))
        for block in self._blocks()[: self.num_chunked_blocks]:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return hidden_states

    def leading_reach(self) -> int:
        """Samples an output of the chunked blocks depends on, either side of its position."""
        return stack_reach(self._blocks()[: self.num_chunked_blocks], conv_reach(self.conv1))[0]

    def _blocks(self) -> list[DacEncoderBlock]:
        return [cast(DacEncoderBlock, block) for block in self.block]

    def output_lengths(self, lengths: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """(batch,) valid samples -> (batch,) frames each item gets alone (0 if too short for one)."""
        for conv in self.modules():
            if isinstance(conv, nn.Conv1d):
                lengths = conv1d_output_lengths(conv, lengths, clamp=clamp)
        return lengths

    def output_length(self, num_samples: int) -> int:
        """Frames :meth:`forward` returns for ``num_samples`` input samples, without running it."""
        # The same formula as the batch's, so the two can never disagree; it may be
        # negative when too short (the caller reports it), unlike the clamped lengths.
        return int(self.output_lengths(torch.tensor([num_samples]), clamp=False)[0])


class DacDecoderBlock(nn.Module):
    """Snake, a transposed conv upsampling by ``stride``, then three residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, output_padding: int = 0) -> None:
        super().__init__()
        self.snake1 = Snake1d(in_channels)
        self.conv_t1 = nn.ConvTranspose1d(
            in_channels,
            out_channels,
            kernel_size=2 * stride,
            stride=stride,
            padding=math.ceil(stride / 2),
            output_padding=output_padding,
        )
        self.res_unit1 = DacResidualUnit(out_channels, dilation=1)
        self.res_unit2 = DacResidualUnit(out_channels, dilation=3)
        self.res_unit3 = DacResidualUnit(out_channels, dilation=9)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, in_channels, time) -> (batch, out_channels, upsampled time).

        lengths: (batch,) valid input steps or None; the output's are ``output_lengths(lengths)``.
        Zeroing the padding before the transposed conv keeps it from spilling into the
        last ``ceil(stride / 2)`` valid outputs, which an item alone computes from its
        own steps only.
        """
        hidden_states = conv_transpose1d_time_major(
            self.conv_t1, zero_padding(self.snake1(hidden_states), lengths)
        )
        if lengths is not None:
            lengths = self.output_lengths(lengths)
        hidden_states = self.res_unit1(hidden_states, lengths)
        hidden_states = self.res_unit2(hidden_states, lengths)
        return self.res_unit3(hidden_states, lengths)

    def reach(self) -> float:
        """Input steps an output depends on, either side of its position ``m / stride``."""
        (kernel,), (stride,) = self.conv_t1.kernel_size, self.conv_t1.stride
        (padding,) = _as_tuple(self.conv_t1.padding)
        units = self.res_unit1.reach() + self.res_unit2.reach() + self.res_unit3.reach()
        # Output m of the transposed conv reads inputs (m + padding - tap) / stride, tap < kernel.
        return (max(padding, kernel - 1 - padding) + units) / stride + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        conv = self.conv_t1
        (padding,) = _as_tuple(conv.padding)
        return conv_transpose_output_lengths(
            lengths,
            conv.kernel_size[0],
            conv.stride[0],
            padding,
            conv.output_padding[0],
            conv.dilation[0],
        )


class DacDecoder(nn.Module):
    """Latent (batch, hidden_size, frames) -> waveform (batch, 1, samples).

    ``odd_stride_output_padding`` and ``final_tanh`` select X-Codec's variant of the DAC
    decoder: X-Codec gives each transposed conv ``output_padding = stride % 2`` (so a
    stride-5 block upsamples exactly 5x) and has no tanh at the end; plain DAC has
    ``output_padding = 0`` and a tanh. Neither option changes the state-dict keys.
    """

    def __init__(
        self,
        hidden_size: int,
        decoder_hidden_size: int,
        upsampling_ratios: Sequence[int],
        *,
        odd_stride_output_padding: bool = False,
        final_tanh: bool = True,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    ) -> None:
        super().__init__()
        width = decoder_hidden_size
        self.conv1 = nn.Conv1d(hidden_size, width, kernel_size=7, padding=3)
        blocks = []
        for stride in upsampling_ratios:
            output_padding = stride % 2 if odd_stride_output_padding else 0
            blocks.append(DacDecoderBlock(width, width // 2, stride, output_padding))
            width //= 2
        self.block = nn.ModuleList(blocks)
        self.snake1 = Snake1d(width)
        self.conv2 = nn.Conv1d(width, 1, kernel_size=7, padding=3)
        self.final_tanh = final_tanh
        # Audio samples of output per chunk of the trailing blocks (0: run whole).
        self.chunk_samples = chunk_samples
        # The trailing blocks whose input runs at 1/64 of the audio rate or faster.
        num_chunked, self.chunked_stride = chunked_prefix(upsampling_ratios[::-1], _CHUNKED_MAX_STRIDE)
        self.num_whole_blocks = len(upsampling_ratios) - num_chunked

    def forward(self, latent: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, hidden_size, frames) -> (batch, 1, samples).

        lengths: (batch,) valid frames per item, or None; with them item i's first
        ``output_lengths(lengths)[i]`` samples equal its alone-run, later samples are unspecified.
        """
        hidden_states = conv1d_time_major(self.conv1, zero_padding(latent, lengths))
        for block in self._blocks()[: self.num_whole_blocks]:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        up = self.chunked_stride
        chunk = self.chunk_samples // up
        if chunk and self.num_whole_blocks < len(self.block):
            halo = math.ceil(self.trailing_reach()) + 1
            waveform = run_chunked(self._trailing, hidden_states, lengths, chunk=chunk, halo=halo, up=up)
        else:
            waveform = self._trailing(hidden_states, lengths)
        return torch.tanh(waveform) if self.final_tanh else waveform

    def _trailing(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The chunked blocks and the output conv: (batch, C, steps) -> (batch, 1, steps * chunked_stride)."""
        for block in self._blocks()[self.num_whole_blocks :]:
            hidden_states = block(hidden_states, lengths)
            lengths = None if lengths is None else block.output_lengths(lengths)
        return conv1d_time_major(self.conv2, zero_padding(self.snake1(hidden_states), lengths))

    def trailing_reach(self) -> float:
        """Input steps of the chunked blocks an output sample depends on, either side of its position."""
        reach = float(conv_reach(self.conv2))
        for block in reversed(self._blocks()[self.num_whole_blocks :]):
            reach = reach / block.conv_t1.stride[0] + block.reach()
        return reach

    def _blocks(self) -> list[DacDecoderBlock]:
        return [cast(DacDecoderBlock, block) for block in self.block]

    def stream_reach(self) -> int:
        """Latent frames an output sample depends on, either side of its frame (rounded up, plus one).

        A stream (:mod:`xcodec.streaming`) that decodes each new stretch with this many
        frames of context on both sides computes what the offline decode does there: the
        zero padding at a window's edges reaches no further in.
        """
        reach, upsampled = float(conv_reach(self.conv1)), 1
        for block in self._blocks():
            reach += block.reach() / upsampled
            upsampled *= block.conv_t1.stride[0]
        return math.ceil(reach + conv_reach(self.conv2) / upsampled) + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) valid frames -> (batch,) samples each item gets alone."""
        for block in self.block:
            assert isinstance(block, DacDecoderBlock)
            lengths = block.output_lengths(lengths)
        return lengths


def _as_tuple(padding: str | int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(padding, str):
        raise ValueError(f"string padding {padding!r} is not used by DAC convolutions")
    if isinstance(padding, int):
        return (padding,)
    return tuple(padding)
