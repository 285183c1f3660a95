"""DistillNeuCodec's acoustic encoder: 16 kHz waveform -> (batch, frames, 512) at one frame per 320 samples.

Data path (published sizes):

    (B, 1, T) --front end: 5 trend-pooled 7-tap convs (4 ch each) -> 1x1 -> GELU -> [+ waveform] -> 1x1--> (B, 32, T)
      --ConvNeXt unit(s) at 32 -> conv k4 s4 -> 64 -> unit -> s4 -> 128 -> unit -> s4 -> 256--> (B, 256, T / 64)
      --2 units -> conv k3--> (B, 512, T / 64)
      --local transformer (2 layers, window 1500) -> conv k5 s5 -> local transformer (3 layers, window 300)--> (B, T / 320, 512)

A ConvNeXt unit is ``x + pw2(GRN(snake(pw1(depthwise_conv(x)))))`` in channels-last
layout; its GRN normalises by the L2 norm of the WHOLE item (all frames and channels),
so an item's result depends on its length: batch items of different lengths are encoded
separately (:meth:`xcodec.models.distill_neucodec.DistillNeuCodecModel.tokenize`).
Weight norm is folded at load time (plain ``weight`` tensors here). The "cache tokens" of
the reference's ``CompressedLocalEncoderWithCache`` have size 0 in this model, so its
split-and-interleave is the identity and is not written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
from xcodec.layers.local_attention import LocalTransformer

__all__ = ["ConvNeXtUnit", "DistillAcousticEncoder", "DistillSemanticAdapter", "TrendPoolFrontEnd"]

# The reference's float32 machine epsilon in Snake (a literal) and GRN (a tensor).
_EPS = 1.1920928955078125e-07


def trend_pool(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Envelope of |x|: a running max then a running mean, both ``kernel_size`` wide, same length."""
    if kernel_size == 1:
        return x
    pad = kernel_size // 2
    # avg_pool1d counts its zero padding (count_include_pad=True), as the reference does.
    return F.avg_pool1d(F.max_pool1d(x.abs(), kernel_size, 1, pad), kernel_size, 1, pad)


class TrendPoolFrontEnd(nn.Module):
    """(batch, 1, samples) -> (batch, out_channels, samples).

    Each branch convolves the trend-pooled waveform (4 channels); the concatenation goes
    through a 1x1 conv (x4 channels) and GELU, the raw waveform is appended as one more
    channel and a last 1x1 conv mixes all into ``out_channels``.
    """

    def __init__(
        self, out_channels: int, pool_kernels: tuple[int, ...], conv_kernel: int, dilation_rate: int
    ) -> None:
        super().__init__()
        self.pool_kernels = pool_kernels
        width = 4 * len(pool_kernels)
        branches = []
        for pool in pool_kernels:
            dilation = pool // dilation_rate + 1
            padding = (conv_kernel - 1) * dilation // 2
            branches.append(nn.Conv1d(1, 4, conv_kernel, dilation=dilation, padding=padding))
        self.branches = nn.ModuleList(branches)
        self.expand = nn.Conv1d(width, 4 * width, 1)
        self.merge = nn.Conv1d(4 * width + 1, out_channels, 1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        hidden = torch.cat(
            [
                conv(trend_pool(waveform, pool))
                for conv, pool in zip(self.branches, self.pool_kernels, strict=True)
            ],
            dim=1,
        )
        hidden = F.gelu(self.expand(hidden))
        return self.merge(torch.cat([hidden, waveform], dim=1))


class ConvNeXtUnit(nn.Module):
    """Residual ConvNeXt unit with Snake and GRN: (batch, dim, frames) -> (batch, dim, frames)."""

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dw_conv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.pw_conv1 = nn.Linear(dim, 4 * dim)
        self.alpha = nn.Parameter(torch.ones(1, 1, 4 * dim))
        self.grn_gamma = nn.Parameter(torch.zeros(1, 4 * dim))
        self.grn_beta = nn.Parameter(torch.zeros(1, 4 * dim))
        self.pw_conv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.pw_conv1(self.dw_conv(x).transpose(1, 2))  # (B, frames, 4 dim)
        # Snake, with the reference's epsilon and order of operations.
        hidden = hidden + (self.alpha + _EPS).reciprocal() * torch.sin(self.alpha * hidden).pow(2)
        # GRN: one L2 norm per item over frames AND channels, so ``norm / (mean over the
        # channel axis of that (B, 1, 1) norm + eps)`` is norm / (norm + eps).
        norm = torch.linalg.vector_norm(hidden, dim=(1, 2), keepdim=True)
        scale = norm / (norm.mean(dim=-1, keepdim=True) + _EPS)
        hidden = self.grn_gamma * (hidden * scale) + self.grn_beta + hidden
        return x + self.pw_conv2(hidden).transpose(1, 2)


class ConvStage(nn.Module):
    """``depth`` ConvNeXt units at one width, then (except the last stage) a strided conv to the next."""

    def __init__(self, dim: int, depth: int, kernel_size: int, out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.units = nn.ModuleList(ConvNeXtUnit(dim, kernel_size) for _ in range(depth))
        self.down = None if out_dim is None else nn.Conv1d(dim, out_dim, stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x if self.down is None else self.down(x)


class DistillAcousticEncoder(nn.Module):
    """(batch, 1, samples) -> (batch, samples / hop, encoder_feature_dim); samples a multiple of the hop (320)."""

    def __init__(self, config: DistillNeuCodecConfig) -> None:
        super().__init__()
        dims = config.encoder_dims
        self.front = TrendPoolFrontEnd(
            dims[0], config.front_pool_kernels, config.front_conv_kernel, config.front_dilation_rate
        )
        strides = (*config.encoder_strides, 1)
        self.stages = nn.ModuleList(
            ConvStage(
                dims[index],
                config.encoder_depths[index],
                config.unit_kernel_size,
                dims[index + 1] if index + 1 < len(dims) else None,
                strides[index],
            )
            for index in range(len(dims))
        )
        self.conv_out = nn.Conv1d(dims[-1], config.encoder_feature_dim, 3, padding=1)
        width = config.encoder_feature_dim
        rate = config.local_compress_rate
        heads, head_dim = config.local_heads, width // 4
        self.wide_transformer = LocalTransformer(
            width, 2, heads, head_dim, config.local_window_size * rate, config.local_ff_mult
        )
        self.compress = nn.Conv1d(width, width, rate, stride=rate)
        self.transformer = LocalTransformer(
            width, config.local_depth - 2, heads, head_dim, config.local_window_size, config.local_ff_mult
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.front(waveform)
        for stage in self.stages:
            x = stage(x)
        x = self.wide_transformer(self.conv_out(x).transpose(1, 2))
        x = self.compress(x.transpose(1, 2)).transpose(1, 2)
        return self.transformer(x)


class DistillSemanticAdapter(nn.Module):
    """The reference's ``SemanticEncoder(width, width, inner)``: (batch, width, frames) -> (batch, width, frames).

    conv1 (no bias) to ``inner`` and ReLU, a residual conv-ReLU-conv, conv4 (no bias) back;
    all 3-tap, zero-padded. X-Codec2's adapter is the case ``inner == width``.
    """

    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, inner, 3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(inner, inner, 3, padding=1)
        self.conv3 = nn.Conv1d(inner, inner, 3, padding=1)
        self.conv4 = nn.Conv1d(inner, width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The reference's first ReLU is in-place, so its skip carries relu(conv1(x)), not conv1(x).
        x = torch.relu(self.conv1(x))
        x = x + self.conv3(torch.relu(self.conv2(x)))
        return self.conv4(x)
