"""Config of DistillNeuCodec (``neuphonic/distill-neucodec``), ``model_type`` "distill_neucodec".

DistillNeuCodec is NeuCodec with a fast encoder (about 21.6 M parameters instead of
W2V-BERT + BigCodec): DistilHuBERT (``ntu-spml/distilhubert``, 2 layers, 768 wide) ->
semantic adapter (768 -> 1024 -> 768), and a ConvNeXt-style Snake/GRN convolution stack
(strides 4, 4, 4) followed by a compressed local-attention transformer (compress rate 5)
-> 512 -> ``fc_sq_prior`` 768; both concatenated (1536) -> ``fc_prior`` -> 2048 -> the
generator NeuCodec uses (FSQ 4^8 + Vocos, 24 kHz). Transformers has no such model, so the
names here are ours; the decoder's fields are NeuCodec's (:class:`NeuCodecConfig`), and
:meth:`DistillNeuCodecConfig.generator_config` hands them to the shared decoder.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from xcodec.configs.base import ConfigBase, ConfigError
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.ssl import HubertConfig
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig

__all__ = ["DistillNeuCodecConfig"]


def _default_semantic_config() -> HubertConfig:
    # ntu-spml/distilhubert: HuBERT base's front end and width, 2 transformer layers.
    return HubertConfig(num_hidden_layers=2)


def _default_rope_parameters() -> dict[str, Any]:
    return {"rope_theta": 10000.0, "rope_type": "default"}


@dataclasses.dataclass
class DistillNeuCodecConfig(ConfigBase):
    """Shape of a DistillNeuCodec model; defaults are the published ``neuphonic/distill-neucodec``.

    Semantic branch: ``semantic_model_config`` (a DistilHuBERT; its last hidden state is
    read) fed the waveform with ``semantic_padding`` zeros on each side, normalised per item
    when ``semantic_do_normalize``; ``semantic_adapter_size`` channels inside the adapter,
    whose output keeps the semantic width.

    Acoustic branch: ``encoder_dims`` channels (one more entry than ``encoder_strides``),
    ``encoder_depths`` ConvNeXt units at each width, a front end of trend-pooled
    convolutions (``front_pool_kernels``, ``front_conv_kernel``, ``front_dilation_rate``),
    a last 3-tap conv to ``encoder_feature_dim``; then ``local_compress_rate``-fold
    compression inside a local-attention transformer of ``local_depth`` layers (2 before
    the compression with windows ``local_window_size * local_compress_rate``, the rest after
    with ``local_window_size``; ``local_heads`` heads of ``encoder_feature_dim / 4``), and
    ``acoustic_projection_dim`` out (``fc_sq_prior``).

    Generator (decoder side): NeuCodec's fields of the same names.
    """

    model_type: ClassVar[str] = "distill_neucodec"

    # Semantic branch.
    semantic_model_config: HubertConfig = dataclasses.field(default_factory=_default_semantic_config)
    semantic_adapter_size: int = 1024
    semantic_padding: int = 160
    semantic_do_normalize: bool = False
    # Acoustic branch.
    encoder_dims: tuple[int, ...] = (32, 64, 128, 256)
    encoder_strides: tuple[int, ...] = (4, 4, 4)
    encoder_depths: tuple[int, ...] = (1, 1, 1, 2)
    front_pool_kernels: tuple[int, ...] = (1, 5, 11, 21, 45)
    front_conv_kernel: int = 7
    front_dilation_rate: int = 99
    unit_kernel_size: int = 7
    encoder_feature_dim: int = 512
    local_window_size: int = 300
    local_compress_rate: int = 5
    local_depth: int = 5
    local_heads: int = 6
    local_ff_mult: float = 4.0
    acoustic_projection_dim: int = 768
    # Generator (NeuCodec's decoder side).
    quantization_dim: int = 2048
    quantization_levels: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4, 4)
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    head_dim: int | None = 64
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    rope_parameters: dict[str, Any] | None = dataclasses.field(default_factory=_default_rope_parameters)
    attention_bias: bool = False
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    input_sampling_rate: int = 16000
    output_sampling_rate: int = 24000

    def __post_init__(self) -> None:
        if isinstance(self.semantic_model_config, dict):
            self.semantic_model_config = HubertConfig.from_dict(self.semantic_model_config)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_parameters is None:
            self.rope_parameters = _default_rope_parameters()
        for name in (
            "encoder_dims",
            "encoder_strides",
            "encoder_depths",
            "front_pool_kernels",
            "quantization_levels",
        ):
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a config no model can be built from."""
        if len(self.encoder_dims) != len(self.encoder_strides) + 1:
            raise ConfigError(
                f"encoder_dims {self.encoder_dims} needs one more entry than encoder_strides {self.encoder_strides}"
            )
        if len(self.encoder_depths) != len(self.encoder_dims):
            raise ConfigError(
                f"encoder_depths {self.encoder_depths} needs one entry per encoder_dims entry {self.encoder_dims}"
            )
        if not self.front_pool_kernels or min(self.front_pool_kernels) < 1:
            raise ConfigError(f"front_pool_kernels must be >= 1, got {self.front_pool_kernels}")
        if self.encoder_feature_dim % 4:
            raise ConfigError(f"encoder_feature_dim ({self.encoder_feature_dim}) must be a multiple of 4")
        if self.local_depth < 2:
            raise ConfigError(
                f"local_depth ({self.local_depth}) must be >= 2 (two layers before the compression)"
            )
        if self.semantic_model_config.hop_length != self.encoder_hop_length:
            raise ConfigError(
                f"the semantic model hops {self.semantic_model_config.hop_length} samples, the acoustic "
                f"encoder {self.encoder_hop_length}; the two streams must run at one frame per code"
            )
        if self.hidden_size % self.num_attention_heads or self.hidden_size % 32:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}) and of 32"
            )
        if not self.quantization_levels or min(self.quantization_levels) < 2:
            raise ConfigError(f"quantization_levels must be integers >= 2, got {self.quantization_levels}")
        if (self.encoder_hop_length * self.output_sampling_rate) % self.input_sampling_rate:
            raise ConfigError(
                f"encoder hop {self.encoder_hop_length} at {self.input_sampling_rate} Hz is not a whole "
                f"number of samples at output_sampling_rate={self.output_sampling_rate} Hz"
            )

    @property
    def encoder_hop_length(self) -> int:
        """Input samples per code frame: the conv strides times the compression rate (320)."""
        return math.prod(self.encoder_strides) * self.local_compress_rate

    @property
    def hop_length(self) -> int:
        """Output samples (at ``output_sampling_rate``) per code frame: the decoder's ISTFT hop (480)."""
        return self.encoder_hop_length * self.output_sampling_rate // self.input_sampling_rate

    @property
    def codebook_size(self) -> int:
        return math.prod(self.quantization_levels)

    def generator_config(self) -> NeuCodecConfig:
        """The decoder side as a :class:`NeuCodecConfig` (what the shared FSQ + Vocos modules read).

        Its W2V-BERT config is a stand-in that only makes ``quantization_dim`` consistent
        there (NeuCodec's is hidden + semantic width); no semantic model is built from it.
        """
        stand_in = Wav2Vec2BertConfig(
            hidden_size=self.quantization_dim - self.hidden_size, num_attention_heads=1, num_hidden_layers=0
        )
        return NeuCodecConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            head_dim=self.head_dim,
            hidden_act=self.hidden_act,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters=dict(self.rope_parameters or {}),
            attention_bias=self.attention_bias,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
            semantic_model_config=stand_in,
            quantization_dim=self.quantization_dim,
            quantization_levels=self.quantization_levels,
            downsampling_ratios=(self.encoder_hop_length,),
            input_sampling_rate=self.input_sampling_rate,
            output_sampling_rate=self.output_sampling_rate,
        )
