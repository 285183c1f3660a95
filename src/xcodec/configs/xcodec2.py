"""Config of X-Codec2 in the Transformers layout (``model_type`` "xcodec2").

Field names and defaults are those of ``transformers.Xcodec2Config`` (5.23), which
describe ``HKUSTAudio/xcodec2-hf``: 16 kHz audio, hop 320 (50 codes/s), one FSQ codebook
of 4^8 = 65536 codes, a W2V-BERT 2.0 semantic encoder cut to 16 layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from xcodec.configs.base import ConfigBase, ConfigError
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig

__all__ = ["Xcodec2Config"]


def _default_semantic_config() -> Wav2Vec2BertConfig:
    # X-Codec2 keeps the first 16 of W2V-BERT 2.0's 24 layers.
    return Wav2Vec2BertConfig(num_hidden_layers=16)


def _default_rope_parameters() -> dict[str, Any]:
    return {"rope_theta": 10000.0, "rope_type": "default"}


@dataclasses.dataclass
class Xcodec2Config(ConfigBase):
    """Shape of an X-Codec2 model.

    The decoder transformer: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``hidden_act``,
    ``rms_norm_eps``, ``rope_parameters``, ``attention_bias``. The acoustic encoder:
    ``encoder_hidden_size`` channels doubled at each of ``downsampling_ratios``. The
    quantiser: ``quantization_dim`` (= hidden_size + semantic hidden size) projected to
    ``len(quantization_levels)`` FSQ digits.

    ``decoder_causal`` (not a Transformers key; X-Codec2-Streaming, issue 15): the decoder
    looks only at past frames (left-padded convs, per-frame normalisation, causal attention
    over the last ``decoder_attention_window`` frames), so it streams exactly with a bounded
    state (:mod:`xcodec.stages.causal_vocos`). Same parameters as the bidirectional decoder.
    Both keys are written to ``config.json`` only when ``decoder_causal`` is true: such a
    checkpoint is ours alone, Transformers would ignore the keys and build the bidirectional
    decoder around the causal weights (wrong audio), so it must not be loaded there.
    """

    model_type: ClassVar[str] = "xcodec2"

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    num_key_value_heads: int | None = 16
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    rope_parameters: dict[str, Any] | None = dataclasses.field(default_factory=_default_rope_parameters)
    attention_bias: bool = False
    attention_dropout: float = 0.0
    head_dim: int | None = 64
    encoder_hidden_size: int = 48
    downsampling_ratios: tuple[int, ...] = (2, 2, 4, 4, 5)
    semantic_model_config: Wav2Vec2BertConfig = dataclasses.field(default_factory=_default_semantic_config)
    sampling_rate: int = 16000
    activation_dropout: float = 0.1
    quantization_dim: int = 2048
    quantization_levels: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4, 4)
    decoder_causal: bool = False
    decoder_attention_window: int = 64

    def __post_init__(self) -> None:
        # Transformers fills these two the same way when a config leaves them out (null).
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.rope_parameters is None:
            self.rope_parameters = _default_rope_parameters()
        if isinstance(self.semantic_model_config, dict):
            self.semantic_model_config = Wav2Vec2BertConfig.from_dict(self.semantic_model_config)
        self.downsampling_ratios = tuple(self.downsampling_ratios)
        self.quantization_levels = tuple(self.quantization_levels)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a config no model can be built from."""
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_size % 32:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be a multiple of 32 (GroupNorm groups)")
        expected_dim = self.hidden_size + self.semantic_model_config.hidden_size
        if self.quantization_dim != expected_dim:
            raise ConfigError(
                f"quantization_dim ({self.quantization_dim}) must equal hidden_size + semantic hidden "
                f"size ({expected_dim})"
            )
        if self.num_key_value_heads != self.num_attention_heads:
            # The decoder's head-indexed rotary (see models/xcodec2.py) gives cos/sin one row
            # per query head, which cannot broadcast against fewer key heads: Transformers
            # 5.23 builds such a model but its forward fails, so there is nothing to match.
            raise ConfigError(
                f"num_key_value_heads ({self.num_key_value_heads}) must equal num_attention_heads "
                f"({self.num_attention_heads}): X-Codec2's decoder does not support grouped-query attention"
            )
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type != "default":
            raise ConfigError(f"rope_type {rope_type!r} is not supported (only 'default')")
        if not self.quantization_levels or min(self.quantization_levels) < 2:
            raise ConfigError(f"quantization_levels must be integers >= 2, got {self.quantization_levels}")
        if not isinstance(self.decoder_causal, bool):
            raise ConfigError(f"decoder_causal must be true or false, got {self.decoder_causal!r}")
        if (
            int(self.decoder_attention_window) != self.decoder_attention_window
            or self.decoder_attention_window < 1
        ):
            raise ConfigError(
                f"decoder_attention_window must be a whole number of frames >= 1, got {self.decoder_attention_window!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if not self.decoder_causal:
            # A bidirectional checkpoint's config.json stays exactly the Transformers one.
            out.pop("decoder_causal", None)
            out.pop("decoder_attention_window", None)
        return out

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame: the product of the downsampling ratios."""
        return math.prod(self.downsampling_ratios)

    @property
    def n_fft(self) -> int:
        """FFT size of the decoder's ISTFT head (four hops)."""
        return self.hop_length * 4

    @property
    def rope_theta(self) -> float:
        return float((self.rope_parameters or {}).get("rope_theta", 10000.0))

    @property
    def codebook_size(self) -> int:
        return math.prod(self.quantization_levels)
