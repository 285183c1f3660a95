"""Time-major ("channels-last") convolutions for the high-rate convolutional stacks.

A 1-D activation is ``(batch, channels, time)`` everywhere in this package. The stacks
that run at the audio rate keep that logical shape but store it time-major, that is as
the transpose of a contiguous ``(batch, time, channels)`` tensor, because oneDNN's
channels-last convolution kernels run the narrow layers far faster on the CPU (48 to 96
channels, 7 taps: about 180 against 80 to 130 GFLOP/s for ``conv1d``, bench/RESULTS.md),
and the filters that slide along time then read contiguous rows. Elementwise operations
keep the layout of their inputs, so it flows through a stack once its first conv makes
it; nothing but speed depends on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv1d_time_major", "conv_transpose1d_time_major", "is_time_major", "time_major"]


def is_time_major(x: torch.Tensor) -> bool:
    """Whether ``x`` (batch, channels, time) is stored as (batch, time, channels) rows with
    contiguous channels and time steps (the batch stride may be larger: a time slice)."""
    _, C, T = x.shape
    return (C == 1 or x.stride(1) == 1) and (T == 1 or x.stride(2) == C)


def time_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, channels, time) with time-major storage (a copy unless it has it already)."""
    return x if is_time_major(x) else x.transpose(1, 2).contiguous().transpose(1, 2)


def conv1d_time_major(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for x (batch, in_channels, time), computed as a channels-last 2-D convolution.

    Returns (batch, out_channels, time') stored time-major. The same products as
    ``conv(x)``, summed in another order.
    """
    (stride,), (dilation,) = conv.stride, conv.dilation
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros" or conv.groups != 1:
        raise ValueError("conv1d_time_major takes zero-padded, ungrouped convolutions with numeric padding")
    (padding,) = conv.padding
    output = F.conv2d(
        time_major(x).unsqueeze(2),
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, stride),
        padding=(0, padding),
        dilation=(1, dilation),
    )
    return time_major(output.squeeze(2))


def conv_transpose1d_time_major(conv: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a transposed convolution, computed channels-last (see :func:`conv1d_time_major`)."""
    (stride,), (dilation,), (output_padding,) = conv.stride, conv.dilation, conv.output_padding
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros" or conv.groups != 1:
        raise ValueError("conv_transpose1d_time_major takes zero-padded, ungrouped convolutions")
    (padding,) = conv.padding
    output = F.conv_transpose2d(
        time_major(x).unsqueeze(2),
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, stride),
        padding=(0, padding),
        output_padding=(0, output_padding),
        dilation=(1, dilation),
    )
    return time_major(output.squeeze(2))
