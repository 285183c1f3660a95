"""Causal building blocks with a bounded stream state: left-padded conv, per-frame norm, windowed attention.

The parts of X-Codec2-Streaming's decoder (:mod:`xcodec.stages.causal_vocos`) that differ
from the bidirectional Vocos decoder. Each keeps the parameter names and shapes of the
module it replaces (``nn.Conv1d``, ``nn.GroupNorm``, :class:`~xcodec.layers.transformer.SelfAttention`),
so a bidirectional checkpoint loads into the causal decoder unchanged; that is how the
causal one is fine-tuned.

Streaming (inside ``with streaming(module, B)``, :mod:`xcodec.ops.streaming`): the conv
keeps its last ``kernel_size - 1`` input frames and the attention its last
``window - 1`` keys and values, so a call on ``n`` new frames costs O(n) whatever the
stream's length, and the concatenated outputs equal the offline output (float summation
order aside).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.transformer import SelfAttention
from xcodec.ops.streaming import StreamingModule, StreamingState

__all__ = [
    "CausalConv1d",
    "CausalConvState",
    "CausalSelfAttention",
    "FrameGroupNorm",
    "KVCacheState",
    "sliding_window_mask",
]


@dataclass
class CausalConvState(StreamingState):
    """history: (batch, in_channels, kernel_size - 1) the last input frames (zeros before the stream starts)."""

    history: torch.Tensor | None = None


class CausalConv1d(nn.Conv1d, StreamingModule[CausalConvState]):
    """Stride-1 conv that sees only the present and past: ``kernel_size - 1`` zeros on the left, none on the right.

    (batch, in_channels, time) -> (batch, out_channels, time). Parameters as ``nn.Conv1d``'s
    (``weight`` (out, in, kernel), ``bias``), so a "same"-padded conv's weights load as they are.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)

    def _init_streaming_state(self, batch_size: int) -> CausalConvState:
        return CausalConvState(batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kernel,) = self.kernel_size
        state = self.streaming_state
        if state is None:
            return super().forward(F.pad(x, (kernel - 1, 0)))
        B, C, _ = x.shape
        history = state.history
        if history is None:  # the stream's start: the offline left padding
            history = x.new_zeros(B, C, kernel - 1)
        joined = torch.cat([history, x], dim=-1)
        state.history = joined[..., joined.shape[-1] - (kernel - 1) :]
        return super().forward(joined)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame (over each group's channels), not over time.

    (batch, channels, time) -> same. Time-local, so causal and stateless; the affine
    ``weight``/``bias`` (channels,) are ``nn.GroupNorm``'s, so a GroupNorm-over-time
    checkpoint loads unchanged. ``stat_groups`` (dividing ``num_channels``) is how many
    groups the statistics are taken over; the decoder uses 1 (see
    :mod:`xcodec.stages.causal_vocos` for why). Computed in float32 at least.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6, stat_groups: int = 1) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=True)
        if num_channels % stat_groups:
            raise ValueError(f"stat_groups ({stat_groups}) must divide num_channels ({num_channels})")
        self.stat_groups = stat_groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        grouped = x.to(compute_dtype).view(B, self.stat_groups, C // self.stat_groups, T)
        mean = grouped.mean(dim=2, keepdim=True)
        centred = grouped - mean
        variance = centred.square().mean(dim=2, keepdim=True)
        normalised = (centred * torch.rsqrt(variance + self.eps)).view(B, C, T)
        normalised = (
            normalised * self.weight.to(compute_dtype)[None, :, None]
            + self.bias.to(compute_dtype)[None, :, None]
        )
        return normalised.to(x.dtype)


def sliding_window_mask(
    num_queries: int, num_keys: int, window: int, device: torch.device | None = None
) -> torch.Tensor:
    """(num_queries, num_keys) bool, True where a query may attend a key.

    The queries are the last ``num_queries`` of the ``num_keys`` positions; query t sees
    keys t - window + 1 .. t (itself and the ``window - 1`` before it).
    """
    offset = num_keys - num_queries
    query = torch.arange(num_queries, device=device)[:, None] + offset
    key = torch.arange(num_keys, device=device)[None, :]
    return (key <= query) & (key > query - window)


@dataclass
class KVCacheState(StreamingState):
    """keys, values: (batch, kv_heads, <= window - 1, head_dim) of the latest frames, or None before the first."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None


class CausalSelfAttention(SelfAttention, StreamingModule[KVCacheState]):
    """Causal attention over a sliding window of ``window`` frames: (batch, time, hidden) -> same.

    Parameters as :class:`SelfAttention`'s. The cached keys carry no positions (X-Codec2's
    decoder attention is position-blind, its rotary runs over heads: see
    :class:`~xcodec.models.xcodec2.Xcodec2Decoder`), so the cache needs no re-rotation; the
    causal window itself is relative (query t sees t - window + 1 .. t).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        window: int,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(hidden_size, num_heads, num_kv_heads, head_dim, bias=bias, dropout=dropout)
        if window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        self.window = window

    def _init_streaming_state(self, batch_size: int) -> KVCacheState:
        return KVCacheState(batch_size)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (batch, time, hidden); attention_mask: bool key mask broadcastable to
        (batch, heads, time, time) (padded frames of a batch), combined with the causal window.
        Streaming: x holds the next frames; ``attention_mask`` must be None."""
        T = x.shape[1]
        q, k, v = self._project(x, rotary)
        state = self.streaming_state
        if state is not None:
            if attention_mask is not None:
                raise ValueError("a streaming attention takes no attention_mask")
            if state.keys is not None and state.values is not None:
                k = torch.cat([state.keys, k], dim=2)
                v = torch.cat([state.values, v], dim=2)
            keep = min(self.window - 1, k.shape[2])
            state.keys, state.values = k[:, :, k.shape[2] - keep :], v[:, :, v.shape[2] - keep :]
        mask = sliding_window_mask(T, k.shape[2], self.window, x.device)
        if attention_mask is not None:
            # Each query keeps itself: a padded frame whose whole window is padding would
            # otherwise have no key at all and turn NaN (valid frames never see it: causal).
            itself = sliding_window_mask(T, k.shape[2], 1, x.device)
            mask = mask & (attention_mask | itself)
        return self._attend(q, k, v, mask)
