"""HuBERT speech encoder, inference only (X-Codec's semantic teacher).

Waveform (16 kHz) -> conv front end -> transformer; :class:`HubertEncoder` returns every
hidden state, as Transformers' ``HubertModel(..., output_hidden_states=True)`` does, and
their mean, which is what X-Codec feeds its semantic branch. Module and parameter names
equal Transformers' (``HubertModel`` state-dict keys), except that the positional conv's
weight norm is folded: convert a checkpoint with
:func:`~xcodec.semantic.conv_frontend.fold_pos_conv_weight_norm` first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.configs.ssl import HubertConfig, SslEncoderConfig
from xcodec.errors import ArgumentError, ConfigError
from xcodec.ops.masking import attention_key_mask
from xcodec.semantic.conv_frontend import (
    ConvFeatureEncoder,
    FeatureProjection,
    HiddenStateAccumulator,
    PositionalConvEmbedding,
    SslEncoder,
    activation_function,
)

__all__ = ["FeedForward", "HubertAttention", "HubertEncoder", "HubertEncoderLayer", "HubertTransformer"]


class FeedForward(nn.Module):
    """Position-wise MLP: hidden -> intermediate -> activation -> hidden."""

    def __init__(self, config: SslEncoderConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = activation_function(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(hidden_states)))


class HubertAttention(nn.Module):
    """Plain multi-head self-attention with separate q/k/v projections."""

    def __init__(self, config: SslEncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        hidden = config.hidden_size
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden).

        key_mask: (batch, 1, 1, frames) bool, True where a frame may be attended to.
        """
        B, T, C = hidden_states.shape
        heads_shape = (B, T, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        # The reference also runs SDPA (its default attention) with scale head_dim ** -0.5.
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask)
        return self.out_proj(attended.transpose(1, 2).reshape(B, T, C))


class HubertEncoderLayer(nn.Module):
    """Transformer layer: post-norm (base models) or pre-norm (``do_stable_layer_norm``)."""

    def __init__(self, config: SslEncoderConfig) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = HubertAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden)."""
        if self.pre_norm:
            hidden_states = hidden_states + self.attention(self.layer_norm(hidden_states), key_mask)
            return hidden_states + self.feed_forward(self.final_layer_norm(hidden_states))
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, key_mask))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class HubertTransformer(nn.Module):
    """Positional conv, then the layers (Transformers' ``HubertEncoder``, our ``encoder`` submodule)."""

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        self.stable_layer_norm = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config, batch_norm=config.conv_pos_batch_norm)
        # Post-norm models apply it before the first layer; pre-norm models after the last
        # (which only changes ``last_hidden_state``, never the hidden states we return).
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(HubertEncoderLayer(config) for _ in range(config.num_hidden_layers))

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
            and never attended to, so each item's valid frames equal its alone-run.
        """
        key_mask = None
        if frame_lengths is not None:
            if frame_mask is not None:
                raise ArgumentError("pass frame_mask or frame_lengths, not both")
            key_mask = attention_key_mask(frame_lengths, hidden_states.shape[1])
        elif frame_mask is not None:
            # Padded frames are zeroed before the positional conv sees them.
            hidden_states = torch.where(frame_mask[:, :, None], hidden_states, 0.0)
            key_mask = frame_mask[:, None, None, :]
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states, frame_lengths)
        if not self.stable_layer_norm:
            hidden_states = self.layer_norm(hidden_states)
        collected = HiddenStateAccumulator(mean_only=mean_only)
        collected.add(hidden_states)
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
            collected.add(hidden_states)
        # Upstream quirk (transformers 5.x records hidden states at each layer's output and
        # does not tie the last one): with do_stable_layer_norm the final layer_norm is
        # NOT applied to hidden_states[-1]. Pinned by test_matches_reference[...stable...].
        return collected.result()


class HubertEncoder(SslEncoder):
    """HuBERT: (batch, samples) 16 kHz waveform -> ``num_hidden_layers + 1`` hidden states.

    Inference only: no dropout, no SpecAugment. ``masked_spec_embed`` exists (when the
    config's masking probabilities say the checkpoint has it) only so loading is strict.
    """

    def __init__(self, config: HubertConfig) -> None:
        super().__init__()
        if config.extra.get("adapter_attn_dim") is not None:
            raise ConfigError("HuBERT attention adapters (adapter_attn_dim) are not supported")
        self.config = config
        self.feature_extractor = ConvFeatureEncoder(config)
        self.feature_projection = FeatureProjection(config, layer_norm=config.feat_proj_layer_norm)
        if config.has_masked_spec_embed:
            self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = HubertTransformer(config)
