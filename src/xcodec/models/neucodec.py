"""NeuCodec: 16 kHz speech -> one stream of FSQ codes at 50 Hz -> 24 kHz speech (Neuphonic, NeuTTS).

NeuCodec is X-Codec2 with a 24 kHz decoder, so :class:`NeuCodecModel` is an
:class:`~xcodec.models.xcodec2.Xcodec2Model` (same modules, same state-dict keys as
Transformers' ``NeuCodecModel``) that differs in these named places:

* rates: it takes audio at ``input_sample_rate`` (16 kHz, encoder hop 320) and returns it at
  ``sample_rate`` (24 kHz); the Vocos head hops ``hop_length`` = 480 samples with
  n_fft = win = 1920 (all from :class:`~xcodec.configs.neucodec.NeuCodecConfig`);
* quirk "code count": the reference computes the semantic filterbank on the padded waveform
  without X-Codec2's ``hop // 2`` zeros on each side, so the semantic branch has one frame
  fewer than the acoustic one and the acoustic frames are trimmed to it. An item of ``n``
  samples, padded to ``T_pad = ceil((n + 1) / 320) * 320``, gets ``T_pad / 320 - 1`` codes
  (16,000 samples -> 50 codes -> 24,000 output samples; 93,680 -> 292). Pinned by
  ``tests/test_neucodec.py::test_code_count_quirk``;
* ``audio_codes_mask`` is 1 on each item's ``code_lengths`` frames. (Transformers 5.23
  scales the sample count to 24 kHz and divides it by the 16 kHz hop, a mask 1.5 times
  too long that covers padding; we do not reproduce it.)

Batch invariance is X-Codec2's machinery with these counts: ``encode(...,
batch_invariant=True)``, ``decode(..., code_lengths=...)`` and ``tokenize``/``detokenize``
give each item of a padded batch exactly its alone-run codes and audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from xcodec.base import TokenizeResult
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.errors import AudioError
from xcodec.models.xcodec2 import (
    Xcodec2DecoderOutput,
    Xcodec2EncoderOutput,
    Xcodec2Model,
    Xcodec2Output,
)
from xcodec.ops.masking import mask_to_lengths

if TYPE_CHECKING:
    from xcodec.features import Xcodec2FeatureExtractor

__all__ = [
    "NeuCodecDecoderOutput",
    "NeuCodecEncoderOutput",
    "NeuCodecModel",
    "NeuCodecOutput",
]

# Same fields as X-Codec2's (Transformers subclasses them the same way); codes mask and
# code_lengths count NeuCodec's frames, audio_values is at 24 kHz.
NeuCodecEncoderOutput = Xcodec2EncoderOutput
NeuCodecDecoderOutput = Xcodec2DecoderOutput
NeuCodecOutput = Xcodec2Output


class NeuCodecModel(Xcodec2Model):
    """NeuCodec codec; the Transformers ``NeuCodecModel`` computation with native modules.

    ``encode(input_values, input_features, padding_mask, input_features_mask,
    output_latents)``: input_values (batch, 1, 320 * (F + 1)) at 16 kHz and
    input_features (batch, F, 160) from :class:`~xcodec.features.NeuCodecFeatureExtractor`
    give audio_codes (batch, 1, F). ``decode(audio_codes)``: (batch, 1, F) -> audio_values
    (batch, 1, 480 F) at 24 kHz. ``forward`` cuts the audio to the input's duration
    (1.5 times its sample count). Arguments and outputs otherwise as in
    :class:`~xcodec.models.xcodec2.Xcodec2Model`.
    """

    config: NeuCodecConfig

    def __init__(self, config: NeuCodecConfig) -> None:
        super().__init__(config)

    # ------------------------------------------------------------------ codec interface
    @property
    def sample_rate(self) -> int:
        return self.config.output_sampling_rate

    @property
    def input_sample_rate(self) -> int:
        return self.config.input_sampling_rate

    @property
    def encoder_hop_length(self) -> int:
        """Input samples (16 kHz) per code frame; ``hop_length`` (480) counts output samples."""
        return self.config.encoder_hop_length

    def frames_for(self, num_samples: int) -> int:
        """``ceil((num_samples + 1) / 320) - 1`` (quirk "code count": one fewer than X-Codec2)."""
        return num_samples // self.encoder_hop_length

    # ------------------------------------------------------------------ where NeuCodec differs
    def _num_code_frames(self, num_samples: int) -> int:
        # Quirk "code count" (module docstring): one frame fewer than the acoustic encoder's.
        return max(num_samples // self.encoder_hop_length - 1, 0)

    def _solo_frames(self, padding_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(batch,) codes each item gets alone: ceil(padding_mask count / 320) - 1.

        Alone, an item is fed its first ``ceil(count / 320) * 320`` samples (the extractor's
        padding, its "always pad" sample counted), one code frame fewer (quirk "code count").
        """
        counts = mask_to_lengths(padding_mask).to(padding_mask.device)
        hop = self.encoder_hop_length
        acoustic_frames = torch.div(counts + hop - 1, hop, rounding_mode="floor")
        return (acoustic_frames - 1).clamp(min=0, max=num_frames)

    def _codes_mask(self, padding_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        # 1 on each item's alone-run frames, laid out like the padding mask (see module docstring).
        code_lengths = self._solo_frames(padding_mask, num_frames)
        frame_index = torch.arange(num_frames, device=padding_mask.device)
        mask = frame_index[None, :] < code_lengths[:, None]
        if padding_mask.dim() == 3:
            mask = mask[:, None, :]
        return mask.to(padding_mask.dtype)

    def _pre_quantization(
        self,
        input_values: torch.Tensor,
        input_features: torch.Tensor,
        input_features_mask: torch.Tensor | None,
        frame_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused semantic + acoustic embedding, (batch, frames, quantization_dim).

        frame_lengths: (batch,) code frames per item (batch-invariant path), or None.
        """
        with torch.no_grad():
            semantic = self.semantic_encoder(input_features, input_features_mask)
        semantic = self.semantic_adapter(semantic.transpose(1, 2), frame_lengths)
        # Alone, an item's acoustic encoder sees one hop more than its codes (quirk "code count").
        sample_lengths = None if frame_lengths is None else (frame_lengths + 1) * self.encoder_hop_length
        acoustic = self.acoustic_encoder(input_values, sample_lengths)
        # The reference trims both streams to the shorter: the acoustic one loses its last frame.
        frames = min(semantic.shape[-1], acoustic.shape[-1])
        fused = torch.cat([semantic[..., :frames], acoustic[..., :frames]], dim=1)
        return self.fc_encoder(fused.transpose(1, 2))

    def _feature_extractor(self) -> Xcodec2FeatureExtractor:
        if self.preprocessor is not None:
            return self.preprocessor
        from xcodec.features import NeuCodecFeatureExtractor

        return NeuCodecFeatureExtractor(
            sampling_rate=self.input_sample_rate, hop_length=self.encoder_hop_length
        )

    @torch.no_grad()
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Encode a padded batch of 16 kHz mono waveforms (batch, samples), batch-invariantly.

        As :meth:`Xcodec2Model.tokenize`, with NeuCodec's count: ``code_lengths`` is
        ``ceil((length + 1) / 320) - 1``. An item shorter than one encoder hop (320 samples)
        would get no code at all (its filterbank has no frame) and raises :class:`AudioError`.
        """
        B, T = waveforms.shape
        lengths_list = [T] * B if lengths is None else [int(n) for n in lengths]
        too_short = [(index, n) for index, n in enumerate(lengths_list) if n < self.encoder_hop_length]
        if too_short:
            raise AudioError(
                f"NeuCodec needs at least {self.encoder_hop_length} samples at {self.input_sample_rate} Hz "
                f"for one code; item(s) (index, samples) {too_short} are shorter"
            )
        return super().tokenize(waveforms, lengths, bandwidth=bandwidth)
