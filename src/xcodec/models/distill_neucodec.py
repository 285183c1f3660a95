"""DistillNeuCodec: NeuCodec with a fast (21.6 M-parameter) encoder; 16 kHz in, 50 FSQ codes/s, 24 kHz out.

Data path (published sizes; F = T_pad / 320 code frames):

    waveform (B, 1, T_pad) -> [160 zeros each side] -> DistilHuBERT, last hidden state (B, F, 768)
        -> semantic_adapter (768 -> 1024 -> 768)                                   -> (B, 768, F)
    waveform (B, 1, T_pad) -> acoustic_encoder (stages/distill_encoder.py) (B, F, 512)
        -> acoustic_projection (``fc_sq_prior``)                                   -> (B, 768, F)
    concat (B, 1536, F) -> fc_encoder (``fc_prior``) -> 2048 -> quantizer (FSQ 4^8) -> audio_codes (B, 1, F)
    codes -> NeuCodec's generator (shared with X-Codec2: models/xcodec2.py) -> (B, 1, 480 F) at 24 kHz

Code count: the reference pads every input with 1..320 zeros to ``T_pad`` (always at least
one, like X-Codec2's extractor) and, unlike NeuCodec, gives the semantic model 160 zeros
on each side, so both streams have ``T_pad / 320`` frames: an item of n samples gets
``n // 320 + 1`` codes, one more than NeuCodec (16,000 samples -> 51 codes).

Batches: the acoustic encoder's GRN normalises over each whole item and DistilHuBERT's
first conv layer is a GroupNorm over time, so padding changes an item's codes. ``encode``
computes the reference's batch as given (the reference only batches equal lengths);
``tokenize`` encodes each group of equal-length items together, so every item gets
exactly its alone-run codes (``batch_invariant``). ``decode`` with ``code_lengths`` and
``detokenize`` are X-Codec2's batch-invariant decoder.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
from xcodec.errors import ArgumentError, AudioError
from xcodec.layers.fsq import ProjectedFSQ
from xcodec.models.xcodec2 import Xcodec2Decoder
from xcodec.ops.masking import lengths_if_padded, mask_to_lengths, zero_padding
from xcodec.semantic.hubert import HubertEncoder, HubertTransformer
from xcodec.stages.distill_encoder import DistillAcousticEncoder, DistillSemanticAdapter

__all__ = [
    "DistillNeuCodecDecoderOutput",
    "DistillNeuCodecEncoderOutput",
    "DistillNeuCodecModel",
    "DistillNeuCodecOutput",
]

# Wav2Vec2FeatureExtractor's zero-mean unit-variance epsilon (``do_normalize``).
_NORMALIZE_EPS = 1e-7


@dataclasses.dataclass
class DistillNeuCodecEncoderOutput:
    """audio_codes: (batch, 1, frames) int32; latents: (batch, quantization_dim, frames) if asked for.

    code_lengths: (batch,) int64 codes each item gets alone, ``n // 320 + 1`` for the
    padding mask's count n; None without a padding mask.
    """

    audio_codes: torch.Tensor
    latents: torch.Tensor | None = None
    code_lengths: torch.Tensor | None = None


@dataclasses.dataclass
class DistillNeuCodecDecoderOutput:
    """audio_values: (batch, 1, frames * 480) at 24 kHz."""

    audio_values: torch.Tensor


@dataclasses.dataclass
class DistillNeuCodecOutput:
    """audio_values: (batch, 1, samples * 3 / 2) at 24 kHz, cut to the input's duration; codes as in encode."""

    audio_values: torch.Tensor
    audio_codes: torch.Tensor
    latents: torch.Tensor | None = None


class DistillNeuCodecModel(CodecModel):
    """DistillNeuCodec codec (``neuphonic/distill-neucodec``), native modules.

    ``encode(input_values)``: (batch, 1, T_pad) at 16 kHz, T_pad a multiple of 320 (the
    reference pads 1..320 zeros; :meth:`pad_input` does it) -> audio_codes (batch, 1,
    T_pad / 320). ``decode(audio_codes)`` -> (batch, 1, 480 frames) at 24 kHz.
    """

    config: DistillNeuCodecConfig

    batch_invariant: ClassVar[bool] = True

    part_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "encoder": (
            "semantic_encoder",
            "semantic_adapter",
            "acoustic_encoder",
            "acoustic_projection",
            "fc_encoder",
            "quantizer",
        ),
        "decoder": ("quantizer", "acoustic_decoder"),
    }

    def __init__(self, config: DistillNeuCodecConfig) -> None:
        super().__init__()
        self.config = config
        semantic_width = config.semantic_model_config.hidden_size
        self.semantic_encoder = HubertEncoder(config.semantic_model_config)
        self.semantic_adapter = DistillSemanticAdapter(semantic_width, config.semantic_adapter_size)
        self.acoustic_encoder = DistillAcousticEncoder(config)
        self.acoustic_projection = nn.Linear(config.encoder_feature_dim, config.acoustic_projection_dim)
        self.fc_encoder = nn.Linear(semantic_width + config.acoustic_projection_dim, config.quantization_dim)
        self.quantizer = ProjectedFSQ(config.quantization_dim, config.quantization_levels, bound_twice=True)
        self.acoustic_decoder = Xcodec2Decoder(config.generator_config())

    # ------------------------------------------------------------------ codec interface
    @property
    def sample_rate(self) -> int:
        return self.config.output_sampling_rate

    @property
    def input_sample_rate(self) -> int:
        return self.config.input_sampling_rate

    @property
    def hop_length(self) -> int:
        """Output samples (24 kHz) per code frame (480)."""
        return self.config.hop_length

    @property
    def encoder_hop_length(self) -> int:
        """Input samples (16 kHz) per code frame (320)."""
        return self.config.encoder_hop_length

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def frames_for(self, num_samples: int) -> int:
        """``num_samples // 320 + 1``: the reference always pads 1..320 zeros."""
        return num_samples // self.encoder_hop_length + 1

    def pad_input(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., T_pad): the reference's ``320 - n % 320`` zeros at the end (1..320)."""
        hop = self.encoder_hop_length
        return F.pad(waveforms, (0, hop - waveforms.shape[-1] % hop))

    # ------------------------------------------------------------------ encoder
    def _semantic_input(self, input_values: torch.Tensor) -> torch.Tensor:
        """(batch, 1, T_pad) -> (batch, T_pad + 2 * semantic_padding), normalised per item if configured."""
        pad = self.config.semantic_padding
        waveform = F.pad(input_values[:, 0, :], (pad, pad))
        if self.config.semantic_do_normalize:
            mean = waveform.mean(dim=-1, keepdim=True)
            variance = waveform.var(dim=-1, keepdim=True, unbiased=False)
            waveform = (waveform - mean) / torch.sqrt(variance + _NORMALIZE_EPS)
        return waveform

    def _pre_quantization(self, input_values: torch.Tensor) -> torch.Tensor:
        """(batch, 1, T_pad) -> fused embedding (batch, frames, quantization_dim)."""
        # DistilHuBERT is frozen (no gradients flow into it in training either).
        with torch.no_grad():
            hidden_states = self.semantic_encoder(self._semantic_input(input_values))
            semantic = hidden_states[-1]
            if self.config.semantic_model_config.do_stable_layer_norm:
                # last_hidden_state of a pre-norm model carries the final LayerNorm.
                transformer = self.semantic_encoder.encoder
                assert isinstance(transformer, HubertTransformer)
                semantic = transformer.layer_norm(semantic)
        semantic = self.semantic_adapter(semantic.transpose(1, 2))
        acoustic = self.acoustic_projection(self.acoustic_encoder(input_values)).transpose(1, 2)
        # Equal counts for a T_pad multiple of the hop; the reference trims to the shorter anyway.
        frames = min(semantic.shape[-1], acoustic.shape[-1])
        fused = torch.cat([semantic[..., :frames], acoustic[..., :frames]], dim=1)
        return self.fc_encoder(fused.transpose(1, 2))

    def encode(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_latents: bool = False,
    ) -> DistillNeuCodecEncoderOutput:
        """(batch, 1, T_pad) 16 kHz waveform, T_pad a multiple of 320 -> codes (batch, 1, T_pad / 320).

        The whole batch is computed as given, as the reference does: an item padded beyond
        its own ``T_pad`` gets other codes than alone (use :meth:`tokenize` for mixed
        lengths). padding_mask: (batch, samples) or (batch, 1, samples), 1 on real audio;
        only sets ``code_lengths``.
        """
        self.require_part("encoder")
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise ArgumentError(f"input_values must be (batch, 1, samples), got {tuple(input_values.shape)}")
        if input_values.shape[-1] % self.encoder_hop_length or input_values.shape[-1] == 0:
            raise ArgumentError(
                f"input_values has {input_values.shape[-1]} samples, not a positive multiple of "
                f"{self.encoder_hop_length}: pad with pad_input() first"
            )
        latents, indices = self.quantizer(self._pre_quantization(input_values))
        code_lengths = None
        if padding_mask is not None:
            counts = mask_to_lengths(padding_mask).to(indices.device)
            code_lengths = (counts // self.encoder_hop_length + 1).clamp(max=indices.shape[-1])
        return DistillNeuCodecEncoderOutput(
            audio_codes=indices[:, None, :],
            latents=latents.transpose(1, 2) if output_latents else None,
            code_lengths=code_lengths,
        )

    # ------------------------------------------------------------------ decoder
    def decode(
        self,
        audio_codes: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        *,
        code_lengths: torch.Tensor | None = None,
    ) -> DistillNeuCodecDecoderOutput:
        """Codes (batch, 1, frames) or latents (batch, quantization_dim, frames) -> (batch, 1, 480 frames).

        code_lengths: (batch,) valid frames per item; item i's first ``480 code_lengths[i]``
        samples then equal its alone decode and the rest are zero (X-Codec2's
        batch-invariant decoder).
        """
        self.require_part("decoder")
        if audio_codes is not None:
            quantized = self.quantizer.from_indices(audio_codes[:, 0, :].long())
        elif latents is not None:
            quantized = latents.transpose(1, 2)
        else:
            raise ArgumentError("decode needs audio_codes or latents")
        B, frames, _ = quantized.shape
        frame_lengths = None
        if code_lengths is not None:
            code_lengths = code_lengths.to(device=quantized.device, dtype=torch.long)
            if code_lengths.shape != (B,) or bool(((code_lengths < 0) | (code_lengths > frames)).any()):
                raise ArgumentError(
                    f"code_lengths must be {B} values in [0, {frames}], got {code_lengths.tolist()}"
                )
            frame_lengths = lengths_if_padded(code_lengths, frames)
        audio_values = self.acoustic_decoder(quantized, frame_lengths)
        if frame_lengths is not None:
            audio_values = zero_padding(audio_values, frame_lengths * self.hop_length)
        return DistillNeuCodecDecoderOutput(audio_values=audio_values)

    def forward(self, input_values: torch.Tensor, output_latents: bool = False) -> DistillNeuCodecOutput:
        """Encode then decode from the latents; audio cut to the input's duration at 24 kHz."""
        encoded = self.encode(input_values, output_latents=True)
        assert encoded.latents is not None
        audio = self.decode(latents=encoded.latents).audio_values
        output_length = input_values.shape[-1] * self.sample_rate // self.input_sample_rate
        return DistillNeuCodecOutput(
            audio_values=audio[..., :output_length],
            audio_codes=encoded.audio_codes,
            latents=encoded.latents if output_latents else None,
        )

    # ------------------------------------------------------------------ waveform interface
    @torch.no_grad()
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Encode a padded batch of 16 kHz mono waveforms (batch, samples); each item exactly as alone.

        Items are padded as the reference pads them (1..320 zeros) and encoded in groups of
        equal length. ``code_lengths`` is ``length // 320 + 1``; codes are 0 after it.
        ``bandwidth`` is ignored (one codebook).
        """
        B, T = waveforms.shape
        lengths_list = [T] * B if lengths is None else [int(n) for n in lengths]
        empty = [index for index, n in enumerate(lengths_list) if n <= 0]
        if empty:
            raise AudioError(f"DistillNeuCodec cannot encode empty audio: item(s) {empty} have no samples")
        code_lengths = torch.tensor([self.frames_for(n) for n in lengths_list], dtype=torch.long)
        codes = torch.zeros(B, 1, int(code_lengths.max()), dtype=torch.long)
        groups: dict[int, list[int]] = {}
        for index, n in enumerate(lengths_list):
            groups.setdefault(n, []).append(index)
        for n, indices in groups.items():
            batch = self.pad_input(waveforms[indices, None, :n].to(self.device, self.dtype))
            group_codes = self.encode(batch).audio_codes.long().cpu()
            codes[indices, :, : group_codes.shape[-1]] = group_codes
        return TokenizeResult(audio_codes=codes, code_lengths=code_lengths)

    @torch.no_grad()
    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        """Codes (batch, 1, frames) -> audio (batch, 480 frames) at 24 kHz, per item as alone with ``code_lengths``."""
        B, _, frames = audio_codes.shape
        device = self.device
        audio = self.decode(
            audio_codes=audio_codes.to(device),
            code_lengths=None if code_lengths is None else code_lengths.to(device),
        ).audio_values[:, 0, :]
        if code_lengths is None:
            code_lengths = torch.full((B,), frames, dtype=torch.long)
        return DetokenizeResult(audio=audio, lengths=code_lengths.to(torch.long).cpu() * self.hop_length)
