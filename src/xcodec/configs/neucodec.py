"""Config of NeuCodec in the Transformers layout (``model_type`` "neucodec").

NeuCodec (Neuphonic, the codec of NeuTTS) is X-Codec2 with a 24 kHz decoder: the same
encoder side at 16 kHz (W2V-BERT 2.0 cut to 16 layers, semantic adapter, BigCodec
acoustic encoder, FSQ of 4^8 codes at 50 frames/s) and the same Vocos decoder whose ISTFT
head hops 480 samples at 24 kHz (n_fft = win = 1920, head Linear hidden -> 1922).

Field names and defaults are those of ``transformers.NeuCodecConfig`` (5.23): every
X-Codec2 field except ``sampling_rate``, plus ``input_sampling_rate`` (16 kHz) and
``output_sampling_rate`` (24 kHz). As there, ``hop_length`` and ``n_fft`` are in the
decoder's (output) domain and ``encoder_hop_length`` in the encoder's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from xcodec.configs.base import ConfigError
from xcodec.configs.xcodec2 import Xcodec2Config

__all__ = ["NeuCodecConfig"]


@dataclasses.dataclass
class NeuCodecConfig(Xcodec2Config):
    """Shape of a NeuCodec model: :class:`Xcodec2Config`'s fields with two sampling rates.

    ``sampling_rate`` is not a NeuCodec key (Transformers removes it from this config);
    it is kept, not written, equal to ``input_sampling_rate`` so that the X-Codec2 code
    shared with :class:`~xcodec.models.neucodec.NeuCodecModel` sees the encoder's rate.
    """

    model_type: ClassVar[str] = "neucodec"

    sampling_rate: int = dataclasses.field(default=16000, init=False, repr=False)
    input_sampling_rate: int = 16000
    output_sampling_rate: int = 24000

    def __post_init__(self) -> None:
        self.sampling_rate = self.input_sampling_rate
        super().__post_init__()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a config no model can be built from."""
        super().validate()
        if self.input_sampling_rate <= 0 or self.output_sampling_rate <= 0:
            raise ConfigError(
                f"sampling rates must be positive, got input_sampling_rate={self.input_sampling_rate}, "
                f"output_sampling_rate={self.output_sampling_rate}"
            )
        if (self.encoder_hop_length * self.output_sampling_rate) % self.input_sampling_rate:
            raise ConfigError(
                f"encoder hop {self.encoder_hop_length} at {self.input_sampling_rate} Hz is not a whole "
                f"number of samples at output_sampling_rate={self.output_sampling_rate} Hz"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NeuCodecConfig:
        values = dict(values)
        # Never a NeuCodec key; a stray one would otherwise land in ``extra`` and be written back.
        values.pop("sampling_rate", None)
        return super().from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("sampling_rate", None)
        return out

    @property
    def encoder_hop_length(self) -> int:
        """Input samples (at ``input_sampling_rate``) per code frame: the product of the downsampling ratios."""
        return math.prod(self.downsampling_ratios)

    @property
    def hop_length(self) -> int:
        """Output samples (at ``output_sampling_rate``) per code frame: the decoder's ISTFT hop."""
        return self.encoder_hop_length * self.output_sampling_rate // self.input_sampling_rate
