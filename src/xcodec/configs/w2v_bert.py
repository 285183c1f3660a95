"""Config of the Wav2Vec2-BERT 2.0 conformer encoder (X-Codec2's semantic encoder).

Field names and defaults follow Transformers' ``Wav2Vec2BertConfig`` (the defaults
describe ``facebook/w2v-bert-2.0``: 24 layers of width 1024; X-Codec2 keeps the first 16).
Only fields that change what inference computes, or which parameters exist, are typed
here; dropout rates, SpecAugment span lengths, CTC/XVector head options and the like pass
through ``extra`` untouched.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from xcodec.configs.base import ConfigBase

__all__ = ["Wav2Vec2BertConfig"]


@dataclasses.dataclass
class Wav2Vec2BertConfig(ConfigBase):
    """Shape of a Wav2Vec2-BERT conformer encoder.

    The encoder reads ``feature_projection_input_dim`` (160 = two stacked 80-bin fbank
    frames) features per frame and returns ``hidden_size`` per frame, same frame count.
    """

    model_type: ClassVar[str] = "wav2vec2-bert"

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    feature_projection_input_dim: int = 160
    # "swish" is SiLU; see semantic/w2v_bert.py for the names we accept.
    hidden_act: str = "swish"
    layer_norm_eps: float = 1e-5
    # "relative_key" = Shaw et al. learned embeddings of the clamped key-minus-query distance.
    position_embeddings_type: str | None = "relative_key"
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    # Only used by the "rotary"/"relative" position types, which we do not build; kept
    # typed so a config that selects them round-trips with its values.
    rotary_embedding_base: int = 10000
    max_source_positions: int = 5000
    conv_depthwise_kernel_size: int = 31
    # The SpecAugment probabilities decide whether the checkpoint carries a
    # ``masked_spec_embed`` vector (present when either is > 0, the default); it is
    # never used at inference but must exist for strict loading.
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0
    # The convolutional adapter on top of the encoder; X-Codec2 does not use it and we
    # do not build it (the encoder raises if it is enabled).
    add_adapter: bool = False
    use_intermediate_ffn_before_adapter: bool = False
    output_hidden_size: int | None = None

    def __post_init__(self) -> None:
        # As Transformers does, so a default config and a dumped one compare equal.
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_masked_spec_embed(self) -> bool:
        """Whether Transformers creates the (unused at inference) ``masked_spec_embed`` parameter."""
        return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0
