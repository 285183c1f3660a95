"""The Vocos decoder's pre-norm transformer layer: RMSNorm, rotary attention, MLP.

On ``(batch, time, hidden)`` sequences. Batch invariance comes from an ``attention_mask``
built from per-item lengths (:func:`xcodec.ops.masking.attention_key_mask`): padded
frames are masked as attention keys. Attribute names match the Transformers layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.activations import activation_function

__all__ = ["MLP", "RMSNorm", "RotaryEmbedding", "SelfAttention", "TransformerLayer", "apply_rotary"]


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis, computed in float32 (T5/Llama style)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary position embedding ("rotate half" layout), for given positions."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.inv_freq: torch.Tensor
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (n,) -> cos, sin each (n, head_dim) in ``dtype``."""
        angles = positions[:, None].float() * self.inv_freq[None, :].float()
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + head_dim/2) of ``x`` by the angles in cos/sin (broadcast against x)."""
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Bidirectional multi-head (or grouped-query) attention: (batch, time, hidden) -> same."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (batch, time, hidden); rotary: cos/sin broadcastable to (batch, heads, time, head_dim);
        attention_mask: bool broadcastable to (batch, heads, time, time), True where a query may
        attend a key (e.g. :func:`xcodec.ops.masking.attention_key_mask`), or None."""
        q, k, v = self._project(x, rotary)
        return self._attend(q, k, v, attention_mask)

    def _project(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (batch, time, hidden) -> q (batch, heads, time, head_dim), k and v (batch, kv_heads, time, head_dim)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return q, k, v

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """q (batch, heads, time, head_dim), k/v (batch, kv_heads, keys, head_dim) -> (batch, time, hidden)."""
        B, _, T, _ = q.shape
        if self.num_kv_heads != self.num_heads:
            repeats = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(repeats, dim=1)
            v = v.repeat_interleave(repeats, dim=1)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """fc1 -> activation -> fc2, no biases: (..., hidden) -> (..., hidden)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "silu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.activation = activation_function(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        if self.activation is F.silu and not (torch.is_grad_enabled() and hidden.requires_grad):
            # In place: the (time, intermediate) tensor is the layer's largest; no copy of it.
            return self.fc2(F.silu(hidden, inplace=True))
        return self.fc2(self.activation(hidden))


class TransformerLayer(nn.Module):
    """Pre-RMSNorm attention and MLP, each with a residual: (batch, time, hidden) -> same."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        eps: float = 1e-6,
        activation: str = "silu",
        attention_bias: bool = False,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(
            hidden_size, num_heads, num_kv_heads, head_dim, bias=attention_bias, dropout=attention_dropout
        )
        self.mlp = MLP(hidden_size, intermediate_size, activation)
        self.input_layernorm = RMSNorm(hidden_size, eps=eps)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=eps)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotary, attention_mask)
        return x + self.mlp(self.post_attention_layernorm(x))
