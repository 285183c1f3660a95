"""Configs of X-Codec (v1): the DAC acoustic codec and the whole model.

Field names and defaults follow Transformers' ``DacConfig`` and ``XcodecConfig``; the
published ``hf-audio/xcodec-*`` ``config.json`` files load here and ours load there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from xcodec.configs.base import ConfigBase, ConfigError
from xcodec.configs.ssl import HubertConfig, WavLMConfig
from xcodec.errors import ArgumentError

__all__ = ["DacConfig", "SemanticConfig", "XcodecConfig"]

SemanticConfig = HubertConfig | WavLMConfig
_SEMANTIC_CONFIGS: dict[str, type[HubertConfig] | type[WavLMConfig]] = {
    HubertConfig.model_type: HubertConfig,
    WavLMConfig.model_type: WavLMConfig,
}


@dataclasses.dataclass
class DacConfig(ConfigBase):
    """The DAC encoder/decoder shape (Transformers' ``DacConfig``; defaults are ``descript/dac_16khz``).

    ``upsampling_ratios``, ``hidden_size`` and ``hop_length`` are derived when left None,
    as Transformers does (reversed ratios, ``encoder_hidden_size * 2**len(ratios)``,
    product of the ratios); an explicit value (X-Codec sets all three) wins.
    The quantizer fields describe DAC's own RVQ, which X-Codec does not use.
    """

    model_type: ClassVar[str] = "dac"

    encoder_hidden_size: int = 64
    downsampling_ratios: tuple[int, ...] = (2, 4, 8, 8)
    decoder_hidden_size: int = 1536
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.0
    commitment_loss_weight: float = 0.25
    codebook_loss_weight: float = 1.0
    sampling_rate: int = 16000
    upsampling_ratios: tuple[int, ...] | None = None
    hidden_size: int | None = None
    hop_length: int | None = None

    def __post_init__(self) -> None:
        self.downsampling_ratios = tuple(self.downsampling_ratios)
        if self.upsampling_ratios is None:
            self.upsampling_ratios = self.downsampling_ratios[::-1]
        self.upsampling_ratios = tuple(self.upsampling_ratios)
        if self.hidden_size is None:
            self.hidden_size = self.encoder_hidden_size * 2 ** len(self.downsampling_ratios)
        if self.hop_length is None:
            self.hop_length = math.prod(self.downsampling_ratios)
        if not self.downsampling_ratios or not self.upsampling_ratios:
            raise ConfigError("DAC needs at least one down- and one upsampling ratio")


def _xcodec_dac_defaults() -> dict[str, Any]:
    # The acoustic config Transformers' XcodecConfig starts from; a config.json that gives
    # only some of these fields gets the rest from here (Transformers' merge, kept for
    # configs written by older versions).
    return {
        "encoder_hidden_size": 64,
        "downsampling_ratios": (8, 5, 4, 2),
        "decoder_hidden_size": 1024,
        "upsampling_ratios": (8, 5, 4, 2),
        "hidden_size": 256,
    }


def _default_acoustic_config() -> DacConfig:
    return DacConfig.from_dict(_xcodec_dac_defaults())


@dataclasses.dataclass
class XcodecConfig(ConfigBase):
    """X-Codec (v1): DAC acoustic codec + HuBERT/WavLM semantic teacher + Euclidean RVQ.

    Defaults describe the published models: 16 kHz, hop 320 (50 frames/s), 8 codebooks of
    1024 entries over 256 + 768 = 1024 channels, 0.5 kbps per codebook.

    X-Codec's acoustic decoder upsamples in the same order (8, 5, 4, 2) as its encoder
    downsamples, not in DAC's reversed order; the config states it with
    ``upsampling_ratios`` equal to ``downsampling_ratios``.
    """

    model_type: ClassVar[str] = "xcodec"

    target_bandwidths: tuple[float, ...] = (0.5, 1, 1.5, 2, 4)
    sample_rate: int = 16000
    kernel_size: int = 3
    channel_ratios: tuple[float, ...] = (1, 1)
    strides: tuple[int, ...] = (1, 1)
    block_dilations: tuple[int, ...] = (1, 1)
    unit_kernel_size: int = 3
    codebook_size: int = 1024
    codebook_dim: int | None = None
    initializer_range: float = 0.02
    acoustic_model_config: DacConfig = dataclasses.field(default_factory=_default_acoustic_config)
    semantic_model_config: HubertConfig | WavLMConfig = dataclasses.field(default_factory=HubertConfig)

    def __post_init__(self) -> None:
        self.target_bandwidths = tuple(self.target_bandwidths)
        if not self.target_bandwidths:
            raise ConfigError("target_bandwidths must name at least one bandwidth")
        if self.codebook_dim is None:
            self.codebook_dim = self.hidden_size
        if self.codebook_dim != self.hidden_size:
            # The RVQ runs on the concatenated acoustic + semantic features; another size
            # would not build (Transformers fails later with a shape error).
            raise ConfigError(
                f"codebook_dim {self.codebook_dim} must equal acoustic hidden_size + semantic hidden_size "
                f"= {self.hidden_size}"
            )
        if self.num_quantizers < 1:
            raise ConfigError(f"target_bandwidths {self.target_bandwidths} allow no codebook at all")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> XcodecConfig:
        """Build from a Transformers ``config.json`` dict.

        The acoustic sub-config is merged over X-Codec's DAC defaults; the semantic one is
        a HuBERT or WavLM config chosen by its ``model_type`` (HuBERT when absent).
        """
        values = dict(values)
        acoustic = values.get("acoustic_model_config")
        if isinstance(acoustic, dict):
            values["acoustic_model_config"] = DacConfig.from_dict({**_xcodec_dac_defaults(), **acoustic})
        semantic = values.get("semantic_model_config")
        if isinstance(semantic, dict):
            kind = semantic.get("model_type", HubertConfig.model_type)
            if kind not in _SEMANTIC_CONFIGS:
                raise ConfigError(
                    f"semantic_model_config has model_type {kind!r}; X-Codec supports {sorted(_SEMANTIC_CONFIGS)}"
                )
            values["semantic_model_config"] = _SEMANTIC_CONFIGS[kind].from_dict(semantic)
        return super().from_dict(values)

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame (product of the acoustic downsampling ratios)."""
        return math.prod(self.acoustic_model_config.downsampling_ratios)

    @property
    def frame_rate(self) -> int:
        """Code frames per second, rounded up as Transformers and the original code do."""
        return math.ceil(self.sample_rate / self.hop_length)

    @property
    def semantic_hidden_size(self) -> int:
        return self.semantic_model_config.hidden_size

    @property
    def acoustic_hidden_size(self) -> int:
        hidden_size = self.acoustic_model_config.hidden_size
        assert hidden_size is not None  # resolved in DacConfig.__post_init__
        return hidden_size

    @property
    def hidden_size(self) -> int:
        """Channels of the fused (acoustic + semantic) features the RVQ quantises."""
        return self.acoustic_hidden_size + self.semantic_hidden_size

    @property
    def codebook_nbits(self) -> int:
        return math.ceil(math.log2(self.codebook_size))

    @property
    def bandwidth_per_quantizer(self) -> float:
        """kbps one codebook costs: log2(codebook_size) bits at ``frame_rate`` (0.5 for the published models)."""
        return math.log2(self.codebook_size) * self.frame_rate / 1000

    @property
    def num_quantizers(self) -> int:
        """Codebooks at the highest target bandwidth (8 for the published models)."""
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * self.codebook_nbits))

    def num_quantizers_for_bandwidth(self, bandwidth: float | None) -> int:
        """Codebooks used at ``bandwidth`` kbps; None means the highest target bandwidth.

        Only the ``target_bandwidths`` are accepted, as in Transformers: another value
        raises ``ValueError`` naming the supported ones.
        """
        if bandwidth is None:
            bandwidth = self.target_bandwidths[-1]
        elif bandwidth not in self.target_bandwidths:
            supported = ", ".join(f"{value:g}" for value in self.target_bandwidths)
            raise ArgumentError(
                f"X-Codec does not support bandwidth {bandwidth:g} kbps; choose one of {supported}"
            )
        if bandwidth <= 0.0:
            return self.num_quantizers
        return int(max(1, math.floor(bandwidth / self.bandwidth_per_quantizer)))
