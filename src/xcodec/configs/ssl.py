"""Configs of the HuBERT and WavLM speech encoders (X-Codec's semantic teachers).

Field names and defaults follow Transformers' ``HubertConfig`` and ``WavLMConfig``
(the defaults describe the base models: 7 strided convolutions down to 50 frames per
second at 16 kHz, then 12 transformer layers of width 768). Only fields that change what
inference computes, or which parameters exist, are typed here; dropout rates,
SpecAugment span lengths, CTC/XVector head options and the like pass through ``extra``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from xcodec.configs.base import ConfigBase, ConfigError

__all__ = ["HubertConfig", "SslEncoderConfig", "WavLMConfig"]

FEAT_EXTRACT_NORMS = ("group", "layer")


@dataclasses.dataclass
class SslEncoderConfig(ConfigBase):
    """Fields HuBERT and WavLM share: the conv front end and the transformer shape.

    The encoder reads a 16 kHz waveform and returns ``hidden_size`` features per frame,
    one frame every ``prod(conv_stride)`` samples (320 for the base models).
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    # "group": a per-channel GroupNorm after the first conv only (base models);
    # "layer": a LayerNorm over channels after every conv (large models).
    feat_extract_norm: str = "group"
    # Also the activation of the positional convolution.
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    # False: post-norm layers and a LayerNorm before the first layer (base models);
    # True: pre-norm layers and a LayerNorm after the last layer (large models).
    do_stable_layer_norm: bool = False
    # The SpecAugment probabilities decide whether the checkpoint carries a
    # ``masked_spec_embed`` vector (present when either is > 0, the default); it is
    # never used at inference but must exist for strict loading.
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0

    def __post_init__(self) -> None:
        lengths = {len(self.conv_dim), len(self.conv_stride), len(self.conv_kernel)}
        if len(lengths) != 1:
            raise ConfigError(
                "conv_dim, conv_stride and conv_kernel must have one entry per conv layer, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)} and {len(self.conv_kernel)}"
            )
        if self.feat_extract_norm not in FEAT_EXTRACT_NORMS:
            raise ConfigError(
                f"feat_extract_norm must be one of {FEAT_EXTRACT_NORMS}, got {self.feat_extract_norm!r}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def hop_length(self) -> int:
        """Input samples per output frame (320 for the base models)."""
        return math.prod(self.conv_stride)

    @property
    def num_hidden_states(self) -> int:
        """How many hidden states the encoder returns: the embedding output plus one per layer."""
        return self.num_hidden_layers + 1

    @property
    def has_masked_spec_embed(self) -> bool:
        """Whether Transformers creates the (unused at inference) ``masked_spec_embed`` parameter."""
        return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0


@dataclasses.dataclass
class HubertConfig(SslEncoderConfig):
    """HuBERT (``facebook/hubert-base-ls960`` by default), X-Codec's default semantic teacher."""

    model_type: ClassVar[str] = "hubert"

    # LayerNorm on the conv features before the projection to ``hidden_size``.
    feat_proj_layer_norm: bool = True
    # BatchNorm instead of weight norm in the positional conv (some later HuBERT variants).
    conv_pos_batch_norm: bool = False


@dataclasses.dataclass
class WavLMConfig(SslEncoderConfig):
    """WavLM (``microsoft/wavlm-base-plus`` shape by default): HuBERT plus gated relative position bias.

    WavLM's feature projection always has its LayerNorm (no ``feat_proj_layer_norm``).
    """

    model_type: ClassVar[str] = "wavlm"

    # Buckets of the relative position embedding (half for each direction) and the
    # distance at which the log-spaced buckets saturate.
    num_buckets: int = 320
    max_bucket_distance: int = 800
    # The convolutional adapter on top of the encoder; X-Codec does not use it and we do
    # not build it (the encoder raises if it is enabled).
    add_adapter: bool = False
