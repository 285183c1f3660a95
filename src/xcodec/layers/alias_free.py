"""SnakeBeta and the anti-aliased (2x up -> activation -> 2x down) wrapper of BigVGAN.

A periodic activation applied at the audio rate folds its harmonics back into the
band; running it at twice the rate between two Kaiser-windowed sinc low-pass filters
keeps the output band-limited. Both resamplers preserve the length: ``(B, C, T)`` in,
``(B, C, T)`` out.

Both filters replicate-pad their input, so an item alone sees copies of its last sample
past its end. In a padded batch, ``lengths`` (batch,) makes them fill each item's padding
with that sample (:func:`xcodec.ops.masking.replicate_pad`), so valid outputs equal
the item's alone-run exactly; ``lengths=None`` is the plain computation.

The filters are fixed (non-persistent buffers), so none of this adds state-dict keys
besides SnakeBeta's ``alpha`` and ``beta``.

Speed: :class:`AntiAliasedActivation1d` computes the same function polyphase. The
zero-stuffed upsampler's output at phase ``p`` (``m = 2j + p``) is a 6-tap FIR of the
input, and the stride-2 downsampler reads each phase through 6 taps, so no tensor at
twice the rate is ever zero-stuffed, replicate-padded or transposed-convolved. The taps
are applied as shifted multiply-adds (a depthwise conv with one filter for every channel
runs slower on the CPU than these few memory passes), the SnakeBeta runs in place, and
the replicate padding at twice the rate becomes copies of one sample per phase. Same
arithmetic per product; only the order of the filter sums differs from the reference
(about 1e-6 relative), pinned by ``tests/test_xcodec2_model.py``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.snake import SnakeBeta
from xcodec.ops.layout import time_major
from xcodec.ops.masking import replicate_pad

__all__ = ["AntiAliasedActivation1d", "DownSample1d", "UpSample1d", "kaiser_sinc_filter1d"]


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

    Submodule names (``act``, ``upsample``, ``downsample``) match the Transformers layout;
    the forward pass is the polyphase form of ``downsample(act(upsample(x)))`` (module
    docstring), :meth:`reference_forward` the literal one.
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
        self._polyphase = (
            _PolyphaseTaps.build(self.upsample, self.downsample) if up_ratio == down_ratio else None
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, channels, time); lengths: (batch,) valid steps or None (all valid).

        The polyphase form writes into preallocated buffers, which autograd cannot follow;
        when gradients are wanted (fine-tuning) the literal form runs instead.
        """
        if self._polyphase is None or _needs_grad(x, self.act):
            return self.reference_forward(x, lengths)
        return self._polyphase.apply(x, lengths, self.act)

    def reach(self) -> int:
        """Input steps an output depends on, either side (for chunked runs)."""
        if self._polyphase is None:
            return -(-self.upsample.kernel_size // self.upsample.ratio) + self.downsample.kernel_size
        return self._polyphase.reach()

    def reference_forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The literal upsample -> SnakeBeta -> downsample, as the reference computes it."""
        upsampled_lengths = None if lengths is None else lengths * self.upsample.ratio
        return self.downsample(self.act(self.upsample(x, lengths)), upsampled_lengths)


def _needs_grad(x: torch.Tensor, module: nn.Module) -> bool:
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(parameter.requires_grad for parameter in module.parameters())


@dataclasses.dataclass(frozen=True)
class _PolyphaseTaps:
    """``downsample(act(upsample(x)))`` for equal ratios ``r``, as sums of shifted slices.

    up[p]: taps (offset, weight) of phase ``p``: ``u_p[j] = sum w * x[clamp(j + offset)]``,
        the ratio folded into the weights (a power of two: exact).
    down: taps (phase, offset, weight): ``y[j] = sum w * s_phase[clamp'(j + offset)]``,
        where ``s_p = act(u_p)`` and clamp' is the replicate padding at the high rate: an
        index before the start reads ``s_0[0]``, one past the end ``s_{r-1}[T - 1]``.
    """

    ratio: int
    up: tuple[tuple[tuple[int, float], ...], ...]
    down: tuple[tuple[int, int, float], ...]

    @staticmethod
    def build(upsample: UpSample1d, downsample: DownSample1d) -> _PolyphaseTaps:
        r = upsample.ratio
        h = upsample.filter.view(-1).tolist()
        g = downsample.filter.view(-1).tolist()
        up = []
        for phase in range(r):
            # Output m = r*j + phase of the transposed conv (after the crop) sums
            # h[k] * padded_x[i] over r*i + k = m + crop_left, with padded_x[i] = x[i - pad].
            taps = []
            for k, weight in enumerate(h):
                if (phase + upsample.crop_left - k) % r == 0:
                    offset = (phase + upsample.crop_left - k) // r - upsample.pad
                    taps.append((offset, r * weight))
            up.append(tuple(sorted(taps)))
        down = []
        for k, weight in enumerate(g):
            # Output j reads the high-rate sample n = r*j + k - pad_left = r*(j + offset) + phase.
            phase = (k - downsample.pad_left) % r
            down.append((phase, (k - downsample.pad_left - phase) // r, weight))
        return _PolyphaseTaps(r, tuple(up), tuple(down))

    def reach(self) -> int:
        """Input steps an output reads, either side: the upsampler's taps plus the downsampler's."""
        up = max(abs(offset) for taps in self.up for offset, _ in taps)
        return up + max(abs(offset) for _, offset, _ in self.down)

    def apply(self, x: torch.Tensor, lengths: torch.Tensor | None, act: SnakeBeta) -> torch.Tensor:
        """x: (batch, channels, time) -> same, stored time-major (see :mod:`xcodec.ops.layout`).

        Works on the (batch, time, channels) storage, so each tap is a pass over whole
        contiguous rows; a channels-first input is transposed (copied) first.
        """
        B, C, T = x.shape
        r = self.ratio
        up_left = max(0, -min(offset for taps in self.up for offset, _ in taps))
        up_right = max(0, max(offset for taps in self.up for offset, _ in taps))
        down_left = max(0, -min(offset for _, offset, _ in self.down))
        down_right = max(0, max(offset for _, offset, _ in self.down))
        rows = time_major(x).transpose(1, 2)  # (B, T, C), contiguous
        rows_padded = _replicate_pad_rows(rows, lengths, up_left, up_right)
        # phases[:, p, down_left + j] = u_p[j] (each phase a block of contiguous rows); the
        # margins are the high-rate padding.
        phases = rows.new_empty(B, r, down_left + T + down_right, C)
        for phase, taps in enumerate(self.up):
            target = phases[:, phase, down_left : down_left + T]
            (offset, weight), *rest = taps
            first = rows_padded[:, up_left + offset : up_left + offset + T]
            if torch.compiler.is_compiling():
                # Dynamo cannot trace ``out=``; the copy is fused away by the compiler anyway.
                target.copy_(first * weight)
            else:
                torch.mul(first, weight, out=target)
            for offset, weight in rest:
                target.add_(rows_padded[:, up_left + offset : up_left + offset + T], alpha=weight)
        valid = phases[:, :, down_left : down_left + T]
        act.forward_(valid, channel_dim=-1)
        if down_left:
            phases[:, :, :down_left] = valid[:, :1, :1]
        if down_right:
            if lengths is None:
                phases[:, :, down_left + T :] = valid[:, r - 1 :, T - 1 :]
            else:
                _fill_after_end(phases, lengths, down_left, down_right, r)
        (first_phase, first_offset, first_weight), *later = self.down
        start = down_left + first_offset
        output = torch.mul(phases[:, first_phase, start : start + T], first_weight)
        for phase, offset, weight in later:
            start = down_left + offset
            output.add_(phases[:, phase, start : start + T], alpha=weight)
        return output.transpose(1, 2)


def _replicate_pad_rows(
    rows: torch.Tensor, lengths: torch.Tensor | None, left: int, right: int
) -> torch.Tensor:
    """(batch, time, channels) -> (batch, left + time + right, channels), replicate-padded along time.

    With ``lengths`` each item's ``right`` steps after its end repeat its last valid step,
    as the item alone padded this way gets them (see :func:`xcodec.ops.masking.replicate_pad`).
    """
    B, T, C = rows.shape
    padded = torch.cat([rows[:, :1].expand(B, left, C), rows, rows[:, T - 1 :].expand(B, right, C)], dim=1)
    if lengths is not None and right:
        last = (lengths.to(device=rows.device, dtype=torch.long) - 1).clamp(min=0, max=T - 1)
        items = torch.arange(B, device=rows.device)
        last_value = rows[items, last]  # (B, C)
        for step in range(right):
            padded[items, (left + last + 1 + step).clamp(max=left + T + right - 1)] = last_value
    return padded


def _fill_after_end(phases: torch.Tensor, lengths: torch.Tensor, left: int, right: int, ratio: int) -> None:
    """Per item, the ``right`` steps after its end (every phase) take its last high-rate sample.

    phases: (batch, ratio, left + time + right, channels); the item's last high-rate
    sample is phase ``ratio - 1`` at its last valid step, as the high-rate replicate
    padding of the item alone reads it.
    """
    B, _, width, _ = phases.shape
    T = width - left - right
    last = (lengths.to(device=phases.device, dtype=torch.long) - 1).clamp(min=0, max=T - 1)
    items = torch.arange(B, device=phases.device)
    last_value = phases[items, ratio - 1, left + last]  # (B, C)
    for step in range(right):
        phases[items, :, (left + last + 1 + step).clamp(max=width - 1)] = last_value[:, None, :]
