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

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.configs.base import ConfigError
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig

__all__ = [
    "ConformerConvolution",
    "ConformerFeedForward",
    "ConformerLayer",
    "ConformerStack",
    "FeatureProjection",
    "RelativeKeySelfAttention",
    "Wav2Vec2BertEncoder",
    "relative_distance_index",
]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "swish": F.silu,
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(
            f"hidden_act {name!r} is not supported; use one of {sorted(_ACTIVATIONS)}"
        ) from None


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
    _activation(config.hidden_act)


def relative_distance_index(
    frames: int, left: int, right: int, device: torch.device | None = None
) -> torch.Tensor:
    """Row of ``distance_embedding`` each (query, key) pair uses: (frames, frames) int64.

    The distance ``key - query`` is clamped to ``[-left, right]`` and shifted by ``left``
    so it indexes an embedding table of ``left + right + 1`` rows.
    """
    positions = torch.arange(frames, device=device)
    distance = positions[None, :] - positions[:, None]
    # In place: at long inputs each (frames, frames) int64 temporary is the biggest buffer.
    return distance.clamp_(-left, right).add_(left)


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
        self.activation = _activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(hidden_states)))


class RelativeKeySelfAttention(nn.Module):
    """Multi-head self-attention with Shaw-style relative-key position bias.

    The reference adds ``scaling * q_i . E[clamp(j - i)]`` to every score, computing it
    from a (frames, frames, head_dim) tensor of gathered embeddings. There are only
    ``left + right + 1`` distinct distances, so we take ``q . E`` against every row of
    the table, (batch, heads, frames, distances), and gather the score each (i, j) pair
    needs. The bias, with the padding mask folded in as the dtype's most negative value
    (as the reference does), goes to ``scaled_dot_product_attention`` as an additive mask.

    ``query_chunk_size`` (None = all at once) attends that many query frames at a time,
    so the (batch, heads, queries, frames) bias and scores stay bounded for long inputs.
    Query rows are independent, so chunking changes nothing but rounding.
    """

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = None) -> None:
        super().__init__()
        hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.query_chunk_size = query_chunk_size
        self.linear_q = nn.Linear(hidden_size, hidden_size)
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.linear_v = nn.Linear(hidden_size, hidden_size)
        self.linear_out = nn.Linear(hidden_size, hidden_size)
        self.distance_embedding: nn.Embedding | None = None
        if config.position_embeddings_type == "relative_key":
            num_distances = config.left_max_position_embeddings + config.right_max_position_embeddings + 1
            self.distance_embedding = nn.Embedding(num_distances, self.head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        distance_index: torch.Tensor | None,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attend over frames.

        hidden_states: (batch, frames, hidden_size).
        distance_index: (frames, frames) int64 from :func:`relative_distance_index`;
            needed when the layer has a ``distance_embedding``.
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
            context = self._attend(query, key, value, distance_index, key_valid)
        else:
            pieces = [
                self._attend(
                    query[:, :, start : start + chunk],
                    key,
                    value,
                    None if distance_index is None else distance_index[start : start + chunk],
                    key_valid,
                )
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
        distance_index: torch.Tensor | None,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """query: (batch, heads, queries, head_dim); key/value: (batch, heads, frames, head_dim)."""
        batch, heads, queries, _ = query.shape
        frames = key.shape[2]
        bias: torch.Tensor | None = None
        if self.distance_embedding is not None:
            if distance_index is None:
                raise ValueError("relative_key attention needs a distance_index")
            table = self.distance_embedding.weight.to(query.dtype)
            # (batch, heads, queries, distances): each query against every distance row.
            per_distance = torch.matmul(query, table.T) * self.scaling
            bias = per_distance.gather(-1, distance_index.expand(batch, heads, queries, frames))
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
        self.activation = _activation(config.hidden_act)
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

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = None) -> None:
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

    def forward(
        self,
        hidden_states: torch.Tensor,
        distance_index: torch.Tensor | None,
        frame_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """hidden_states: (batch, frames, hidden_size) -> same shape."""
        hidden_states = hidden_states + 0.5 * self.ffn1(self.ffn1_layer_norm(hidden_states))
        hidden_states = hidden_states + self.self_attn(
            self.self_attn_layer_norm(hidden_states), distance_index, frame_valid
        )
        hidden_states = hidden_states + self.conv_module(hidden_states, frame_valid)
        hidden_states = hidden_states + 0.5 * self.ffn2(self.ffn2_layer_norm(hidden_states))
        return self.final_layer_norm(hidden_states)


class ConformerStack(nn.Module):
    """The ``encoder`` submodule: ``num_hidden_layers`` conformer blocks."""

    def __init__(self, config: Wav2Vec2BertConfig, query_chunk_size: int | None = None) -> None:
        super().__init__()
        self.left_max_position_embeddings = config.left_max_position_embeddings
        self.right_max_position_embeddings = config.right_max_position_embeddings
        self.uses_distance = config.position_embeddings_type == "relative_key"
        self.layers = nn.ModuleList(
            ConformerLayer(config, query_chunk_size) for _ in range(config.num_hidden_layers)
        )

    def forward(self, hidden_states: torch.Tensor, frame_valid: torch.Tensor | None) -> torch.Tensor:
        """hidden_states: (batch, frames, hidden_size); frame_valid: (batch, frames) bool or None."""
        frames = hidden_states.shape[1]
        if frame_valid is not None:
            hidden_states = hidden_states.masked_fill(~frame_valid[..., None], 0.0)
        distance_index = None
        if self.uses_distance:
            distance_index = relative_distance_index(
                frames,
                self.left_max_position_embeddings,
                self.right_max_position_embeddings,
                device=hidden_states.device,
            )
        for layer in self.layers:
            hidden_states = layer(hidden_states, distance_index, frame_valid)
        return hidden_states


class Wav2Vec2BertEncoder(nn.Module):
    """Wav2Vec2-BERT 2.0 encoder; equals Transformers' ``Wav2Vec2BertModel(...).last_hidden_state``.

    ``state_dict()`` keys equal those of ``transformers.Wav2Vec2BertModel(config)``,
    ``masked_spec_embed`` included when the config's SpecAugment probabilities create it
    (the default does); that vector only serves training and is never read here.

    ``query_chunk_size`` bounds attention memory for long inputs (see
    :class:`RelativeKeySelfAttention`); it is not part of the config or checkpoint.
    """

    def __init__(self, config: Wav2Vec2BertConfig, *, query_chunk_size: int | None = None) -> None:
        super().__init__()
        _check_supported(config)
        if query_chunk_size is not None and query_chunk_size < 1:
            raise ValueError(f"query_chunk_size must be positive or None, got {query_chunk_size}")
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
