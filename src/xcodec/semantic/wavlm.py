"""WavLM speech encoder, inference only (a semantic teacher of X-Codec).

WavLM is HuBERT's architecture plus a gated relative position bias in every attention
layer: layer 0 owns the bucketed relative-position embedding (``rel_attn_embed``); the
bias it yields is computed once and shared by all layers, each of which scales it per
head and per query frame by a gate computed from its own input. Module and parameter names
equal Transformers' ``WavLMModel`` state-dict keys, except that the positional conv's
weight norm is folded (see :func:`~xcodec.semantic.conv_frontend.fold_pos_conv_weight_norm`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.configs.ssl import WavLMConfig
from xcodec.errors import ArgumentError, ConfigError
from xcodec.ops.masking import attention_key_mask
from xcodec.semantic.conv_frontend import (
    ConvFeatureEncoder,
    FeatureProjection,
    HiddenStateAccumulator,
    PositionalConvEmbedding,
    SslEncoder,
)
from xcodec.semantic.hubert import FeedForward

__all__ = [
    "WavLMAttention",
    "WavLMEncoder",
    "WavLMEncoderLayer",
    "WavLMTransformer",
    "relative_position_buckets",
]

# gru_rel_pos_linear maps each head's features to 2 gates x 4 terms that are summed.
_GATE_TERMS = 4


def relative_position_buckets(
    num_frames: int, num_buckets: int, max_distance: int, device: torch.device
) -> torch.Tensor:
    """Bucket index of every (query, key) frame pair, (num_frames, num_frames) int64.

    Half of the buckets hold keys after the query, half the rest; within each half the
    first quarter of ``num_buckets`` are exact distances, the others log-spaced up to
    ``max_distance`` (T5-style bucketing, as in the reference).
    """
    positions = torch.arange(num_frames, dtype=torch.long, device=device)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    distance = relative.abs()
    max_exact = half // 2
    is_small = distance < max_exact
    # clamp keeps log() finite at distance 0; those pairs take the exact branch anyway.
    # The operation order matches the reference so the float rounding, and so the
    # bucket of every distance, is the same.
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact)
    log_ratio = log_ratio / math.log(max_distance / max_exact)
    log_ratio = log_ratio * (half - max_exact)
    large = (max_exact + log_ratio).to(torch.long).clamp(max=half - 1)
    return buckets + torch.where(is_small, distance, large)


class WavLMAttention(nn.Module):
    """Multi-head self-attention with WavLM's gated relative position bias."""

    def __init__(self, config: WavLMConfig, *, has_relative_position_bias: bool) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_buckets = config.num_buckets
        self.max_distance = config.max_bucket_distance
        hidden = config.hidden_size
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 2 * _GATE_TERMS)
        self.rel_attn_embed = (
            nn.Embedding(self.num_buckets, self.num_heads) if has_relative_position_bias else None
        )
        # False: the reference's operation order (bit-exact on CPU); True: fused SDPA
        # (faster, equal within ~1e-6). Set for the whole model by WavLMEncoder(use_sdpa=...).
        self.use_sdpa = False

    def relative_position_bias(self, num_frames: int) -> torch.Tensor:
        """Ungated bias, (heads, frames, frames); only layer 0 has the embedding for it."""
        if self.rel_attn_embed is None:
            raise RuntimeError("only the first WavLM layer holds rel_attn_embed")
        buckets = relative_position_buckets(
            num_frames, self.num_buckets, self.max_distance, self.rel_attn_embed.weight.device
        )
        return self.rel_attn_embed(buckets).permute(2, 0, 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_bias: torch.Tensor,
        key_padding_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden).

        position_bias: (heads, frames, frames) from layer 0's :meth:`relative_position_bias`.
        key_padding_bias: (batch, 1, 1, frames) float, -inf on padded frames, or None.
        """
        B, T, C = hidden_states.shape
        heads_shape = (B, T, self.num_heads, self.head_dim)
        # Gate per head and query frame, from this layer's input split into heads.
        per_head = hidden_states.view(heads_shape).permute(0, 2, 1, 3)
        gate_logits = self.gru_rel_pos_linear(per_head).view(B, self.num_heads, T, 2, _GATE_TERMS).sum(-1)
        gate_a, gate_b = torch.sigmoid(gate_logits).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0
        attn_bias = gate * position_bias
        if key_padding_bias is not None:
            attn_bias = attn_bias + key_padding_bias

        query = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        if self.use_sdpa:
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_bias)
        else:
            attended = self._reference_order_attention(query, key, value, attn_bias)
        return self.out_proj(attended.transpose(1, 2).reshape(B, T, C))

    def _reference_order_attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_bias: torch.Tensor
    ) -> torch.Tensor:
        """Attention in the order of torch's ``multi_head_attention_forward``, which the reference runs.

        Scaling q first, then ``baddbmm(bias, q, k^T)``, reproduces the reference bit for
        bit on CPU (SDPA differs by ~1e-6); it costs one extra (batch, heads, frames, frames)
        tensor, the size of the bias that exists anyway.
        """
        B, H, T, D = query.shape
        scaled_query = query * math.sqrt(1.0 / D)
        scores = torch.baddbmm(
            attn_bias.expand(B, H, T, T).reshape(B * H, T, T),
            scaled_query.reshape(B * H, T, D),
            key.reshape(B * H, T, D).transpose(1, 2),
        )
        attended = torch.bmm(scores.softmax(dim=-1), value.reshape(B * H, T, D))
        return attended.view(B, H, T, D)


class WavLMEncoderLayer(nn.Module):
    """Transformer layer: post-norm (base models) or pre-norm (``do_stable_layer_norm``)."""

    def __init__(self, config: WavLMConfig, *, has_relative_position_bias: bool) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = WavLMAttention(config, has_relative_position_bias=has_relative_position_bias)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_bias: torch.Tensor,
        key_padding_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden)."""
        if self.pre_norm:
            attended = self.attention(self.layer_norm(hidden_states), position_bias, key_padding_bias)
            hidden_states = hidden_states + attended
            return hidden_states + self.feed_forward(self.final_layer_norm(hidden_states))
        attended = self.attention(hidden_states, position_bias, key_padding_bias)
        hidden_states = self.layer_norm(hidden_states + attended)
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class WavLMTransformer(nn.Module):
    """Positional conv, then the layers (Transformers' ``WavLMEncoder``, our ``encoder`` submodule)."""

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        self.stable_layer_norm = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        # Post-norm models apply it before the first layer; pre-norm models after the last
        # (which only changes ``last_hidden_state``, never the hidden states we return).
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(
            WavLMEncoderLayer(config, has_relative_position_bias=(i == 0))
            for i in range(config.num_hidden_layers)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None,
        *,
        mean_only: bool = False,
        frame_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """(batch, frames, hidden) projected features -> every hidden state (or their mean).

        frame_mask: (batch, frames) bool, True on valid frames, or None for all valid (the
            reference's masking).
        frame_lengths: (batch,) valid frames per item, the batch-invariant path (instead of
            ``frame_mask``): padded frames are zeroed where the positional conv reads them
            and never attended to. The relative position bias depends only on the distance
            between two frames, so an item's valid (query, key) pairs get the bias they get
            alone.
        """
        key_padding_bias = None
        if frame_lengths is not None:
            if frame_mask is not None:
                raise ArgumentError("pass frame_mask or frame_lengths, not both")
            frame_mask = attention_key_mask(frame_lengths, hidden_states.shape[1])[:, 0, 0, :]
        elif frame_mask is not None:
            # Padded frames are zeroed before the positional conv sees them.
            hidden_states = torch.where(frame_mask[:, :, None], hidden_states, 0.0)
        if frame_mask is not None:
            key_padding_bias = torch.zeros(
                frame_mask.shape, dtype=hidden_states.dtype, device=frame_mask.device
            )
            key_padding_bias = key_padding_bias.masked_fill(~frame_mask, float("-inf"))[:, None, None, :]
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states, frame_lengths)
        if not self.stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        first_attention = self.layers[0].attention
        assert isinstance(first_attention, WavLMAttention)
        # Computed once from layer 0's embedding and shared, ungated, by every layer.
        position_bias = first_attention.relative_position_bias(hidden_states.shape[1])
        collected = HiddenStateAccumulator(mean_only=mean_only)
        collected.add(hidden_states)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_bias, key_padding_bias)
            collected.add(hidden_states)
        # Upstream quirk, as in HuBERT: with do_stable_layer_norm the final layer_norm is
        # NOT applied to hidden_states[-1]. Pinned by test_matches_reference[...stable...].
        return collected.result()


class WavLMEncoder(SslEncoder):
    """WavLM: (batch, samples) 16 kHz waveform -> ``num_hidden_layers + 1`` hidden states.

    Inference only: no dropout, no SpecAugment. ``masked_spec_embed`` exists (when the
    config's masking probabilities say the checkpoint has it) only so loading is strict.
    """

    def __init__(self, config: WavLMConfig, *, use_sdpa: bool = False) -> None:
        super().__init__()
        if config.add_adapter:
            raise ConfigError("WavLM's output adapter (add_adapter=True) is not supported")
        self.config = config
        self.feature_extractor = ConvFeatureEncoder(config)
        # WavLM always normalises the conv features before projecting them.
        self.feature_projection = FeatureProjection(config, layer_norm=True)
        if config.has_masked_spec_embed:
            self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = WavLMTransformer(config)
        self.use_sdpa = use_sdpa

    @property
    def use_sdpa(self) -> bool:
        """Whether attention runs fused SDPA (faster) instead of the reference's exact operation order."""
        return self._use_sdpa

    @use_sdpa.setter
    def use_sdpa(self, value: bool) -> None:
        self._use_sdpa = value
        for module in self.modules():
            if isinstance(module, WavLMAttention):
                module.use_sdpa = value
