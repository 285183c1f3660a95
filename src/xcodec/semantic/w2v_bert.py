"""Wav2Vec2-BERT 2.0: the conformer speech encoder X-Codec2 uses for its semantic features.

Data path (inference only, so no dropout, LayerDrop or SpecAugment)::

    input_features (batch, frames, 160)
      -> LayerNorm -> Linear                          feature_projection
      -> zero the padded frames
      -> num_hidden_layers x conformer block:         encoder.layers
           x + 0.5 * FFN(LN(x))
           x + SelfAttention(LN(x))   relative-key position bias
           x + ConvModule(x)          causal depthwise conv
           LN(x + 0.5 * FFN(LN(x)))
    last_hidden_state (batch, frames, hidden_size)

Module and parameter names mirror Transformers' ``Wav2Vec2BertModel`` so its checkpoint
loads as an identity map. The relative-key attention is computed without the reference's
(frames, frames, head_dim) embedding tensor: see :class:`RelativeKeySelfAttention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.configs.base import ConfigError
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig
from xcodec.errors import ArgumentError
from xcodec.layers.activations import activation_function

__all__ = [
    "ConformerConvolution",
    "ConformerFeedForward",
    "ConformerLayer",
    "ConformerStack",
    "FeatureProjection",
    "RelativeKeySelfAttention",
    "Wav2Vec2BertEncoder",
    "relative_bias",
]


def _check_supported(config: Wav2Vec2BertConfig) -> None:
    if config.add_adapter or config.use_intermediate_ffn_before_adapter:
        raise ConfigError(
            "Wav2Vec2-BERT with add_adapter=True (or use_intermediate_ffn_before_adapter=True) is not "
            "supported: X-Codec2 uses the bare encoder, so only add_adapter=False is implemented"
        )
    if config.position_embeddings_type not in ("relative_key", None):
        raise ConfigError(
            f"position_embeddings_type {config.position_embeddings_type!r} is not supported; "
            "only 'relative_key' (the w2v-bert-2.0 default) and None are implemented"
        )
    if config.hidden_size % config.num_attention_heads != 0:
        raise ConfigError(
            f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}"
        )
    if config.conv_depthwise_kernel_size % 2 != 1:
        raise ConfigError(f"conv_depthwise_kernel_size must be odd, got {config.conv_depthwise_kernel_size}")
    activation_function(config.hidden_act)


def relative_bias(
    per_distance: torch.Tensor, first_query: int, frames: int, left: int, right: int
) -> torch.Tensor:
    """Score bias of every (query, key) pair from each query's score against every distance row.

    per_distance: (batch, heads, queries, left + right + 1), ``q_i . E[d]`` for the queries
        ``first_query ..`` and every clamped distance ``d - left`` in ``[-left, right]``.
    Returns (batch, heads, queries, frames), a strided view: entry (i, j) is
    ``per_distance[i, clamp(j - (first_query + i), -left, right) + left]``.

    Row i of the result is row i of one "skewed" tensor read from column ``queries - 1 -
    i`` on (row stride one less than its width): the row holds the first distance's
    score repeated, all ``left + right + 1`` scores, then the last one repeated. Building
    it is a concatenation of slices, cheaper than gathering with a (frames, frames) index.
    """
    B, H, Q, D = per_distance.shape
    width = frames + Q - 1
    # Column of the skewed row where the distance is -left: there j - first_query - i = -left
    # with j = column - (Q - 1) + i.
    column = Q - 1 + first_query - left
    low, high = max(0, -column), min(D, width - column)
    parts = []
    if column > 0:
        parts.append(per_distance[..., :1].expand(B, H, Q, column))
    parts.append(per_distance[..., low:high])
    remaining = width - max(column, 0) - (high - low)
    if remaining > 0:
        parts.append(per_distance[..., D - 1 :].expand(B, H, Q, remaining))
    skewed = torch.cat(parts, dim=-1)  # (B, H, Q, width), fresh: storage offset 0
    return skewed.as_strided((B, H, Q, frames), (H * Q * width, Q * width, width - 1, 1), Q - 1)


class FeatureProjection(nn.Module):
    """LayerNorm then Linear: (batch, frames, feature_projection_input_dim) -> (batch, frames, hidden_size)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_projection_input_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_projection_input_dim, config.hidden_size)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(input_features))


class ConformerFeedForward(nn.Module):
    """Linear -> activation -> Linear, on (batch, frames, hidden_size)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = activation_function(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(hidden_states)))


class RelativeKeySelfAttention(nn.Module):
    """Multi-head self-attention with Shaw-style relative-key position bias.

    The reference adds ``scaling * q_i . E[clamp(j - i)]`` to every score, computing it
    from a (frames, frames, head_dim) tensor of gathered embeddings. There are only
    ``left + right + 1`` distinct distances, so we take ``q . E`` against every row of
    the table, (batch, heads, frames, distances), and lay those scores out per (i, j)
    pair with :func:`relative_bias`. The bias, with the padding mask folded in as the
    dtype's most negative value (as the reference does), goes to
    ``scaled_dot_product_attention`` as an additive mask.

    ``query_chunk_size`` (None = all at once) attends that many query frames at a time,
    so the (batch, heads, queries, frames) bias and scores stay bounded for long inputs
    and warm in the cache; query rows are independent, so chunking changes nothing but
    rounding. The default, 256, measured fastest here (1000 frames: 44 ms a layer
    against 66 ms at once; 128 to 512 are within 5%).
    """

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = 256) -> None:
        super().__init__()
        hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.query_chunk_size = query_chunk_size
        self.left = config.left_max_position_embeddings
        self.right = config.right_max_position_embeddings
        self.linear_q = nn.Linear(hidden_size, hidden_size)
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.linear_v = nn.Linear(hidden_size, hidden_size)
        self.linear_out = nn.Linear(hidden_size, hidden_size)
        self.distance_embedding: nn.Embedding | None = None
        if config.position_embeddings_type == "relative_key":
            num_distances = self.left + self.right + 1
            self.distance_embedding = nn.Embedding(num_distances, self.head_dim)

    def forward(self, hidden_states: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        """Attend over frames.

        hidden_states: (batch, frames, hidden_size).
        key_valid: (batch, frames) bool, False on padded frames (no query attends to them).
        Returns (batch, frames, hidden_size).
        """
        batch, frames, hidden_size = hidden_states.shape
        heads_shape = (batch, frames, self.num_heads, self.head_dim)
        query = self.linear_q(hidden_states).view(heads_shape).transpose(1, 2)
        key = self.linear_k(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.linear_v(hidden_states).view(heads_shape).transpose(1, 2)

        chunk = self.query_chunk_size
        if chunk is None or frames <= chunk:
            context = self._attend(query, key, value, 0, key_valid)
        else:
            pieces = [
                self._attend(query[:, :, start : start + chunk], key, value, start, key_valid)
                for start in range(0, frames, chunk)
            ]
            context = torch.cat(pieces, dim=2)
        context = context.transpose(1, 2).reshape(batch, frames, hidden_size)
        return self.linear_out(context)

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        first_query: int,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """query: (batch, heads, queries, head_dim), frames ``first_query ..``; key/value: (batch, heads, frames, head_dim)."""
        frames = key.shape[2]
        bias: torch.Tensor | None = None
        if self.distance_embedding is not None:
            table = self.distance_embedding.weight.to(query.dtype)
            # (batch, heads, queries, distances): each query against every distance row.
            per_distance = torch.matmul(query, table.T) * self.scaling
            bias = relative_bias(per_distance, first_query, frames, self.left, self.right)
        if key_valid is not None:
            keep = key_valid[:, None, None, :]
            lowest = torch.finfo(query.dtype).min
            if bias is None:
                bias = torch.zeros(keep.shape, dtype=query.dtype, device=query.device)
            bias = bias.masked_fill(~keep, lowest)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=self.scaling)


class ConformerConvolution(nn.Module):
    """LN -> pointwise conv + GLU -> causal depthwise conv -> LN -> activation -> pointwise conv.

    Upstream quirk kept: the depthwise convolution is causal (all ``kernel - 1`` frames
    of padding on the left), unlike the symmetric conv of the original Conformer.
    Pinned by tests/test_w2v_bert.py (reference comparison).
    """

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        channels = config.hidden_size
        self.layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1, bias=False)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, config.conv_depthwise_kernel_size, groups=channels, bias=False
        )
        self.depthwise_layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.activation = activation_function(config.hidden_act)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1, bias=False)

    def forward(self, hidden_states: torch.Tensor, frame_valid: torch.Tensor | None) -> torch.Tensor:
        """hidden_states: (batch, frames, hidden_size); frame_valid: (batch, frames) bool or None."""
        hidden_states = self.layer_norm(hidden_states)
        if frame_valid is not None:
            # Padded frames are zeroed so nothing from them enters the convolution.
            hidden_states = hidden_states.masked_fill(~frame_valid[..., None], 0.0)
        hidden_states = F.glu(self.pointwise_conv1(hidden_states.transpose(1, 2)), dim=1)
        kernel_size = self.depthwise_conv.kernel_size[0]
        hidden_states = self.depthwise_conv(F.pad(hidden_states, (kernel_size - 1, 0)))
        hidden_states = self.depthwise_layer_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        hidden_states = self.pointwise_conv2(self.activation(hidden_states))
        return hidden_states.transpose(1, 2)


class ConformerLayer(nn.Module):
    """One conformer block (macaron half-step FFNs around attention and convolution)."""

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = 256) -> None:
        super().__init__()
        hidden_size = config.hidden_size
        eps = config.layer_norm_eps
        self.ffn1_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn1 = ConformerFeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.self_attn = RelativeKeySelfAttention(config, query_chunk_size)
        self.conv_module = ConformerConvolution(config)
        self.ffn2_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn2 = ConformerFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, hidden_states: torch.Tensor, frame_valid: torch.Tensor | None) -> torch.Tensor:
        """hidden_states: (batch, frames, hidden_size) -> same shape."""
        hidden_states = hidden_states + 0.5 * self.ffn1(self.ffn1_layer_norm(hidden_states))
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states), frame_valid)
        hidden_states = hidden_states + self.conv_module(hidden_states, frame_valid)
        hidden_states = hidden_states + 0.5 * self.ffn2(self.ffn2_layer_norm(hidden_states))
        return self.final_layer_norm(hidden_states)


class ConformerStack(nn.Module):
    """The ``encoder`` submodule: ``num_hidden_layers`` conformer blocks."""

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = 256) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConformerLayer(config, query_chunk_size) for _ in range(config.num_hidden_layers)
        )

    def forward(self, hidden_states: torch.Tensor, frame_valid: torch.Tensor | None) -> torch.Tensor:
        """hidden_states: (batch, frames, hidden_size); frame_valid: (batch, frames) bool or None."""
        if frame_valid is not None:
            hidden_states = hidden_states.masked_fill(~frame_valid[..., None], 0.0)
        for layer in self.layers:
            hidden_states = layer(hidden_states, frame_valid)
        return hidden_states


class Wav2Vec2BertEncoder(nn.Module):
    """Wav2Vec2-BERT 2.0 encoder; equals Transformers' ``Wav2Vec2BertModel(...).last_hidden_state``.

    ``state_dict()`` keys equal those of ``transformers.Wav2Vec2BertModel(config)``,
    ``masked_spec_embed`` included when the config's SpecAugment probabilities create it
    (the default does); that vector only serves training and is never read here.

    ``query_chunk_size`` bounds attention memory for long inputs (see
    :class:`RelativeKeySelfAttention`); it is not part of the config or checkpoint.
    """

    def __init__(self, config: Wav2Vec2BertConfig, *, query_chunk_size: int | None = 256) -> None:
        super().__init__()
        _check_supported(config)
        if query_chunk_size is not None and query_chunk_size < 1:
            raise ArgumentError(f"query_chunk_size must be positive or None, got {query_chunk_size}")
        self.config = config
        if config.has_masked_spec_embed:
            self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.feature_projection = FeatureProjection(config)
        self.encoder = ConformerStack(config, query_chunk_size)

    def forward(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode feature frames.

        input_features: (batch, frames, feature_projection_input_dim), cast to the
            parameters' dtype.
        attention_mask: (batch, frames), 1/True on valid frames, 0/False on padding; None
            means every frame is valid. Padded frames still get an output row (as in
            the reference) but no valid frame depends on them.
        Returns last_hidden_state: (batch, frames, hidden_size).
        """
        weight = self.feature_projection.projection.weight
        hidden_states = self.feature_projection(input_features.to(device=weight.device, dtype=weight.dtype))
        frame_valid = None if attention_mask is None else attention_mask.to(hidden_states.device).bool()
        return self.encoder(hidden_states, frame_valid)
