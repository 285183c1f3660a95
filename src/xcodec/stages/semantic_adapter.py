"""X-Codec's convolutional encoder/decoder for semantic (HuBERT/WavLM) features.

Plain ``nn.Conv1d`` stacks with ELU residual units; names follow Transformers'
``SemanticEncoder``/``SemanticDecoder`` so the state-dict keys match. With the
published settings (``strides=(1, 1)``) every layer keeps the frame count.
Only the encoder runs at inference; the decoder regressed the semantic features
during training and is kept so checkpoints load strictly.

Padded batches: the encoder's ``forward`` takes optional ``lengths`` (batch,) of valid
frames; the padding is then zeroed before every conv of kernel > 1 (where an item alone
meets the conv's zero padding) and the lengths follow strided convs, so each item's valid
frames equal its alone-run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xcodec.errors import ConfigError
from xcodec.ops.masking import conv1d_output_lengths, zero_padding

__all__ = [
    "SemanticDecoder",
    "SemanticDecoderBlock",
    "SemanticEncoder",
    "SemanticEncoderBlock",
    "SemanticResidualUnit",
]


class SemanticResidualUnit(nn.Module):
    """ELU -> dilated conv (no bias) -> ELU -> 1x1 conv (no bias), added to the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.activation = nn.ELU()
        padding = (kernel_size - 1) // 2 * dilation
        self.conv1 = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels, frames) -> (batch, channels, frames); lengths: (batch,) valid frames or None."""
        branch = self.conv1(zero_padding(self.activation(hidden_states), lengths))
        branch = self.conv2(self.activation(branch))
        return hidden_states + branch


class SemanticEncoderBlock(nn.Module):
    """Residual units, then a conv that may downsample (kernel 3 at stride 1, else 2·stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        dilations: Sequence[int],
        unit_kernel_size: int,
    ) -> None:
        super().__init__()
        self.res_units = nn.ModuleList(
            [
                SemanticResidualUnit(in_channels, in_channels, unit_kernel_size, dilation)
                for dilation in dilations
            ]
        )
        # A stride-1 block would get kernel 2 from the 2·stride rule, which cannot keep the
        # length with symmetric padding, hence kernel 3 there (as in the original code).
        kernel = 3 if stride == 1 else 2 * stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, in_channels, frames) -> (batch, out_channels, frames / stride).

        lengths: (batch,) valid input frames or None; the output's are ``conv1d_output_lengths(self.conv, lengths)``.
        """
        for unit in self.res_units:
            hidden_states = unit(hidden_states, lengths)
        return self.conv(zero_padding(hidden_states, lengths))


class SemanticEncoder(nn.Module):
    """Semantic features (batch, hidden_size, frames) -> (batch, hidden_size·channel_ratios[-1], frames')."""

    def __init__(
        self,
        hidden_size: int,
        *,
        kernel_size: int,
        channel_ratios: Sequence[float],
        strides: Sequence[int],
        block_dilations: Sequence[int],
        unit_kernel_size: int,
    ) -> None:
        super().__init__()
        if len(strides) != len(channel_ratios):
            raise ConfigError(f"got {len(strides)} strides but {len(channel_ratios)} channel_ratios")
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size, padding=kernel_size // 2, bias=False)
        blocks = []
        in_channels = hidden_size
        for ratio, stride in zip(channel_ratios, strides, strict=True):
            out_channels = int(hidden_size * ratio)
            blocks.append(
                SemanticEncoderBlock(in_channels, out_channels, stride, block_dilations, unit_kernel_size)
            )
            in_channels = out_channels
        self.conv_blocks = nn.ModuleList(blocks)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, hidden_size, frames) -> (batch, channels, frames').

        lengths: (batch,) valid frames per item, or None; with them item i's first
        ``output_lengths(lengths)[i]`` frames equal its alone-run, later frames are unspecified.
        """
        hidden_states = self.conv(zero_padding(hidden_states, lengths))
        if lengths is not None:
            lengths = conv1d_output_lengths(self.conv, lengths)
        for block in self.conv_blocks:
            assert isinstance(block, SemanticEncoderBlock)
            hidden_states = block(hidden_states, lengths)
            if lengths is not None:
                lengths = conv1d_output_lengths(block.conv, lengths)
        return hidden_states

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) valid input frames -> (batch,) valid output frames."""
        lengths = conv1d_output_lengths(self.conv, lengths)
        for block in self.conv_blocks:
            assert isinstance(block, SemanticEncoderBlock)
            lengths = conv1d_output_lengths(block.conv, lengths)
        return lengths


class SemanticDecoderBlock(nn.Module):
    """A conv (kernel 3) or, for stride > 1, a transposed conv upsampling; then residual units.

    Transformers builds the transposed conv without a bias while the original code has one;
    only strides > 1 reach that branch and no published model uses them.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        dilations: Sequence[int],
        unit_kernel_size: int,
    ) -> None:
        super().__init__()
        self.conv: nn.Module
        if stride == 1:
            self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1)
        else:
            self.conv = nn.ConvTranspose1d(
                in_channels,
                out_channels,
                kernel_size=2 * stride,
                stride=stride,
                padding=(stride + 1) // 2,
                output_padding=stride % 2,
                bias=False,
            )
        self.res_units = nn.ModuleList(
            [
                SemanticResidualUnit(out_channels, out_channels, unit_kernel_size, dilation)
                for dilation in dilations
            ]
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, frames) -> (batch, out_channels, frames·stride)."""
        hidden_states = self.conv(hidden_states)
        for unit in self.res_units:
            hidden_states = unit(hidden_states)
        return hidden_states


class SemanticDecoder(nn.Module):
    """Mirror of :class:`SemanticEncoder`: (batch, hidden_size, frames) -> (batch, hidden_size, frames')."""

    def __init__(
        self,
        hidden_size: int,
        *,
        kernel_size: int,
        channel_ratios: Sequence[float],
        strides: Sequence[int],
        block_dilations: Sequence[int],
        unit_kernel_size: int,
    ) -> None:
        super().__init__()
        if len(strides) != len(channel_ratios):
            raise ConfigError(f"got {len(strides)} strides but {len(channel_ratios)} channel_ratios")
        widths = [int(hidden_size * ratio) for ratio in channel_ratios] + [hidden_size]
        self.conv1 = nn.Conv1d(hidden_size, widths[0], kernel_size, padding=kernel_size // 2, bias=False)
        self.conv_blocks = nn.ModuleList(
            [
                SemanticDecoderBlock(
                    widths[index], widths[index + 1], stride, block_dilations, unit_kernel_size
                )
                for index, stride in enumerate(strides)
            ]
        )
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, hidden_size, frames) -> (batch, hidden_size, frames')."""
        hidden_states = self.conv1(hidden_states)
        for block in self.conv_blocks:
            hidden_states = block(hidden_states)
        return self.conv2(hidden_states)
