"""The wav2vec 2.0 front end that HuBERT and WavLM share.

Waveform -> strided conv stack (``feature_extractor``) -> LayerNorm + linear
(``feature_projection``) -> plus a grouped positional convolution
(``encoder.pos_conv_embed``). Module and parameter names equal Transformers' so a
checkpoint's keys map one to one; the one exception is the positional conv's weight norm,
which the loaders fold into a plain ``weight``
(:func:`xcodec.checkpoints.common.fold_pos_conv_weight_norm`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xcodec.configs.ssl import SslEncoderConfig
from xcodec.errors import ArgumentError, ConfigError
from xcodec.layers.activations import activation_function
from xcodec.ops.layout import conv1d_time_major
from xcodec.ops.masking import conv1d_output_lengths, masked_group_norm, zero_padding

__all__ = [
    "ConvFeatureEncoder",
    "FeatureProjection",
    "HiddenStateAccumulator",
    "PositionalConvEmbedding",
    "SslEncoder",
    "activation_function",
    "conv_output_lengths",
    "feature_frame_mask",
]


class _ConvLayer(nn.Module):
    """One strided conv, an optional norm, then the activation."""

    def __init__(self, config: SslEncoderConfig, layer_id: int, norm: str | None) -> None:
        super().__init__()
        in_channels = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        out_channels = config.conv_dim[layer_id]
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size=config.conv_kernel[layer_id],
            stride=config.conv_stride[layer_id],
            bias=config.conv_bias,
        )
        # LayerNorm normalises the channel axis, which must be last.
        self.norm_is_channels_last = norm == "layer"
        # Upstream quirk: both conv norms use torch's default eps 1e-5, not
        # config.layer_norm_eps (pinned by the layer_norm_eps tests in tests/test_ssl_semantic.py).
        self.layer_norm: nn.Module | None
        if norm == "group":
            # One group per channel: each channel is normalised over the whole utterance.
            self.layer_norm = nn.GroupNorm(num_groups=out_channels, num_channels=out_channels, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_channels, elementwise_affine=True)
        else:
            self.layer_norm = None
        self.activation = activation_function(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """lengths: (batch,) valid output frames of this conv per item, or None (all valid).

        The conv has no padding, so its valid outputs never read past an item's end; only
        the GroupNorm, whose statistics span the whole time axis, needs the lengths.
        """
        # Time-major storage (xcodec.ops.layout): the CPU's channels-last kernels run
        # these 512-channel convs about 40% faster, and the projection after the last one
        # reads (batch, frames, channels) rows without a transposing copy.
        hidden_states = conv1d_time_major(self.conv, hidden_states)
        if self.layer_norm is not None and self.norm_is_channels_last:
            hidden_states = self.layer_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        elif isinstance(self.layer_norm, nn.GroupNorm):
            if lengths is None:
                # 4-D channels-last: GroupNorm's kernel for that layout, no copy to channels-first.
                hidden_states = self.layer_norm(hidden_states.unsqueeze(2)).squeeze(2)
            else:
                hidden_states = masked_group_norm(hidden_states, self.layer_norm, lengths)
        return self.activation(hidden_states)


class ConvFeatureEncoder(nn.Module):
    """The strided conv stack that turns samples into frames (``feature_extractor``)."""

    def __init__(self, config: SslEncoderConfig) -> None:
        super().__init__()
        if config.feat_extract_norm == "group":
            norms: list[str | None] = ["group"] + [None] * (config.num_feat_extract_layers - 1)
        elif config.feat_extract_norm == "layer":
            norms = ["layer"] * config.num_feat_extract_layers
        else:
            raise ConfigError(
                f"feat_extract_norm must be 'group' or 'layer', got {config.feat_extract_norm!r}"
            )
        self.conv_layers = nn.ModuleList(_ConvLayer(config, i, norm) for i, norm in enumerate(norms))

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, samples) waveform -> (batch, conv_dim[-1], frames) features.

        lengths: (batch,) valid samples per item, or None. With lengths, item i's first
        ``output_lengths(lengths)[i]`` frames equal its alone-run (the first layer's
        GroupNorm takes its statistics over the item's own frames); later frames are
        unspecified.
        """
        hidden_states = input_values[:, None, :]
        for conv_layer in self.conv_layers:
            assert isinstance(conv_layer, _ConvLayer)
            if lengths is not None:
                lengths = conv1d_output_lengths(conv_layer.conv, lengths)
            hidden_states = conv_layer(hidden_states, lengths)
        return hidden_states

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) valid samples -> (batch,) valid frames (0 for an item too short for one)."""
        for conv_layer in self.conv_layers:
            assert isinstance(conv_layer, _ConvLayer)
            lengths = conv1d_output_lengths(conv_layer.conv, lengths)
        return lengths


class FeatureProjection(nn.Module):
    """Optional LayerNorm of the conv features, then a linear map to ``hidden_size``."""

    def __init__(self, config: SslEncoderConfig, *, layer_norm: bool) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps) if layer_norm else None
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, conv_dim[-1]) -> (batch, frames, hidden_size)."""
        if self.layer_norm is not None:
            features = self.layer_norm(features)
        return self.projection(features)


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time whose output is added to the frames as a position signal.

    The weight is plain: the checkpoint's weight norm (``dim=2``) is folded at load time.
    """

    def __init__(self, config: SslEncoderConfig, *, batch_norm: bool = False) -> None:
        super().__init__()
        kernel_size = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.batch_norm = nn.BatchNorm1d(config.hidden_size) if batch_norm else None
        # Symmetric padding of an even kernel yields one frame too many; drop the last.
        self.num_pad_remove = 1 if kernel_size % 2 == 0 else 0
        self.activation = activation_function(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, hidden) -> (batch, frames, hidden) position embeddings.

        lengths: (batch,) valid frames per item (batch-invariant path), or None. With
        lengths the padded frames are zeroed right before the conv, after the batch norm,
        which is where an item alone meets the conv's zero padding.
        """
        hidden_states = hidden_states.transpose(1, 2)
        if self.batch_norm is not None:
            hidden_states = self.batch_norm(hidden_states)
        hidden_states = self.conv(zero_padding(hidden_states, lengths))
        if self.num_pad_remove:
            hidden_states = hidden_states[:, :, : -self.num_pad_remove]
        return self.activation(hidden_states).transpose(1, 2)


def conv_output_lengths(
    input_lengths: torch.Tensor, conv_kernel: Sequence[int], conv_stride: Sequence[int]
) -> torch.Tensor:
    """Frames the conv stack makes of ``input_lengths`` samples (unpadded valid convolutions)."""
    lengths = input_lengths
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def feature_frame_mask(
    attention_mask: torch.Tensor, num_frames: int, config: SslEncoderConfig
) -> torch.Tensor:
    """Sample-level mask (batch, samples) -> frame-level bool mask (batch, num_frames).

    Like the reference, only the count of valid samples matters (right padding assumed):
    frame ``t`` is valid when ``t < conv_output_lengths(count)``.
    """
    valid_samples = attention_mask.to(torch.long).sum(-1)
    lengths = conv_output_lengths(valid_samples, config.conv_kernel, config.conv_stride)
    # Upstream quirk: the reference marks frame ``length - 1`` and fills leftwards, so an
    # item too short for a single frame (length <= 0) wraps around to ``num_frames + length``
    # valid frames instead of none.
    lengths = torch.where(lengths > 0, lengths, lengths + num_frames)
    frames = torch.arange(num_frames, device=attention_mask.device)
    return frames[None, :] < lengths[:, None]


class HiddenStateAccumulator:
    """Collects an encoder's hidden states, or only their running sum.

    Keeping only the sum lets the mean over all layers be taken without holding every
    (batch, frames, hidden) tensor alive at once.
    """

    def __init__(self, *, mean_only: bool) -> None:
        self.mean_only = mean_only
        self.states: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, hidden_states: torch.Tensor) -> None:
        self.count += 1
        if not self.mean_only:
            self.states.append(hidden_states)
        elif self.total is None:
            self.total = hidden_states
        else:
            self.total = self.total + hidden_states

    def result(self) -> tuple[torch.Tensor, ...]:
        """Every hidden state in order, or a 1-tuple holding their mean."""
        if not self.mean_only:
            return tuple(self.states)
        assert self.total is not None, "no hidden state was added"
        return (self.total / self.count,)


class SslEncoder(nn.Module):
    """The shell HuBERT and WavLM share: waveform -> conv features -> projection -> transformer.

    Subclasses build ``config``, ``feature_extractor`` (:class:`ConvFeatureEncoder`),
    ``feature_projection`` (:class:`FeatureProjection`) and ``encoder``, a transformer
    called as ``encoder(hidden_states, frame_mask, mean_only=, frame_lengths=)`` that
    returns every hidden state (or a 1-tuple of their mean).
    """

    config: SslEncoderConfig
    feature_extractor: ConvFeatureEncoder
    feature_projection: FeatureProjection
    encoder: nn.Module

    def _run(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        mean_only: bool,
        lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, ...]:
        if lengths is not None and attention_mask is not None:
            raise ArgumentError("pass attention_mask or lengths, not both")
        features = self.feature_extractor(input_values, lengths).transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = feature_frame_mask(attention_mask, features.shape[1], self.config)
        frame_lengths = None if lengths is None else self.feature_extractor.output_lengths(lengths)
        hidden_states = self.feature_projection(features)
        hidden: tuple[torch.Tensor, ...] = self.encoder(
            hidden_states, frame_mask, mean_only=mean_only, frame_lengths=frame_lengths
        )
        return hidden

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Every hidden state, each (batch, frames, hidden_size).

        input_values: (batch, samples) float waveform.
        attention_mask: (batch, samples), 1 on valid samples (right padding), or None:
            masks as the reference does (its conv GroupNorm still sees the padding).
        lengths: (batch,) valid samples per item, or None: the batch-invariant path, each
            item's first ``feature_extractor.output_lengths(lengths)`` frames equal its
            alone-run (GroupNorm statistics, positional conv and attention keys over the
            item's own frames); later frames are unspecified. Not with ``attention_mask``.
        Returns ``num_hidden_layers + 1`` tensors: the embedding output (positional conv
        added; normed for post-norm HuBERT), then each layer's output; exactly the
        reference's ``output_hidden_states=True`` tuple. ``frames`` is
        ``conv_output_lengths(samples)`` (samples // 320, minus 1 when samples % 320 < 80,
        for the base conv stack).
        """
        return self._run(input_values, attention_mask, mean_only=False, lengths=lengths)

    def mean_hidden_states(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over all ``num_hidden_layers + 1`` hidden states, (batch, frames, hidden_size).

        Arguments as in :meth:`forward`; the mean is over layers, frame by frame.
        """
        return self._run(input_values, attention_mask, mean_only=True, lengths=lengths)[0]
