"""SnakeBeta and the anti-aliased (2x up -> activation -> 2x down) wrapper of BigVGAN.

A periodic activation applied at the audio rate folds its harmonics back into the
band; running it at twice the rate between two Kaiser-windowed sinc low-pass filters
keeps the output band-limited. Both resamplers preserve the length: ``(B, C, T)`` in,
``(B, C, T)`` out.

Both filters replicate-pad their input, so an item alone sees copies of its last sample
past its end. In a padded batch, ``lengths`` (batch,) makes them fill each item's padding
with that sample (:func:`xcodec.layers.masking.replicate_pad`), so valid outputs equal
the item's alone-run exactly; ``lengths=None`` is the plain computation.

The filters are fixed (non-persistent buffers), so none of this adds state-dict keys
besides SnakeBeta's ``alpha`` and ``beta``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.masking import replicate_pad

__all__ = ["AntiAliasedActivation1d", "DownSample1d", "SnakeBeta", "UpSample1d", "kaiser_sinc_filter1d"]


class SnakeBeta(nn.Module):
    """``x + sin(x * e^alpha)^2 / e^beta`` per channel (alpha, beta stored as logarithms).

    x: (batch, channels, time) -> (batch, channels, time).
    """

    # Keeps 1 / e^beta finite; part of the reference arithmetic, so it stays.
    no_div_by_zero = 1e-9

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frequency = self.alpha.exp()[None, :, None]
        inverse_magnitude = 1.0 / (self.beta.exp()[None, :, None] + self.no_div_by_zero)
        return x + inverse_magnitude * torch.sin(x * frequency).pow(2)


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR filter, shape (1, 1, kernel_size), summing to one.

    cutoff: normalised cutoff frequency in (0, 0.5]; half_width: transition half-width;
    the Kaiser beta follows Kaiser's empirical formula for the attenuation the width allows.
    """
    half_size = kernel_size // 2
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        kaiser_beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        kaiser_beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        kaiser_beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=kaiser_beta, periodic=False, dtype=torch.float32)
    if kernel_size % 2 == 0:
        # Even length: taps sit half a sample either side of the centre.
        taps = torch.arange(-half_size, half_size) + 0.5
    else:
        taps = torch.arange(kernel_size) - half_size
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size)
    response = 2 * cutoff * window * torch.sinc(2 * cutoff * taps)
    # Unit DC gain: a constant signal passes unchanged.
    response /= response.sum()
    return response.view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Zero-stuffing upsampler with a sinc low-pass: (batch, channels, T) -> (batch, channels, ratio*T)."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        # Replicate-pad the input, then crop the transposed convolution's transient.
        self.pad = self.kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (self.kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (self.kernel_size - ratio + 1) // 2
        self.filter: torch.Tensor
        self.register_buffer(
            "filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, self.kernel_size), persistent=False
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, channels, T); lengths: (batch,) valid steps or None. Valid outputs: ratio * lengths."""
        _, C, _ = x.shape
        x = replicate_pad(x, lengths, self.pad, self.pad)
        weight = self.filter.to(x.dtype).expand(C, -1, -1)
        # Scaling by `ratio` restores the energy the inserted zeros remove.
        x = self.ratio * F.conv_transpose1d(x, weight, stride=self.ratio, groups=C)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Sinc low-pass then decimation: (batch, channels, T) -> (batch, channels, ceil(T / ratio))."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = kernel_size
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.filter: torch.Tensor
        self.register_buffer(
            "filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel_size), persistent=False
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, channels, T); lengths: (batch,) valid steps or None. Valid outputs: ceil(lengths / ratio)."""
        _, C, _ = x.shape
        x = replicate_pad(x, lengths, self.pad_left, self.pad_right)
        weight = self.filter.to(x.dtype).expand(C, -1, -1)
        return F.conv1d(x, weight, stride=self.ratio, groups=C)


class AntiAliasedActivation1d(nn.Module):
    """SnakeBeta run at twice the rate: (batch, channels, time) -> (batch, channels, time).

    Submodule names (``act``, ``upsample``, ``downsample``) match the Transformers layout.
    """

    def __init__(
        self,
        channels: int,
        up_ratio: int = 2,
        down_ratio: int = 2,
        up_kernel_size: int = 12,
        down_kernel_size: int = 12,
    ) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, channels, time); lengths: (batch,) valid steps or None (all valid)."""
        upsampled_lengths = None if lengths is None else lengths * self.upsample.ratio
        return self.downsample(self.act(self.upsample(x, lengths)), upsampled_lengths)
