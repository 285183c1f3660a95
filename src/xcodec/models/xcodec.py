"""X-Codec (v1): semantic + acoustic encoders, fused and quantised by a residual VQ.

Data path of :meth:`XcodecModel.encode`, waveform (batch, 1, samples) at 16 kHz:

1. semantic branch: the waveform, zero-padded by ``hop_length // 2`` on both sides, goes
   through the frozen HuBERT/WavLM teacher; the mean of all its hidden states
   (batch, frames, 768) goes through ``encoder_semantic`` (a conv stack);
2. acoustic branch: the DAC encoder gives (batch, 256, frames);
3. both are concatenated ([acoustic, semantic] on channels) and mixed by ``fc``;
4. a Euclidean residual VQ turns each frame into ``num_quantizers`` codes.

:meth:`XcodecModel.decode` sums the codebook rows, keeps the acoustic part with ``fc2``
and runs the DAC decoder. ``decoder_semantic`` and ``fc1`` were training-only heads;
they are kept so the checkpoints load strictly.

Module names (and so the state-dict keys) equal Transformers' ``XcodecModel``; weight
norm is folded at load time (:mod:`xcodec.checkpoints.xcodec`). The model does no I/O.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.configs.ssl import HubertConfig, WavLMConfig
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import AudioError
from xcodec.layers.dac import DacDecoder, DacEncoder
from xcodec.layers.rvq import ResidualVectorQuantizer
from xcodec.layers.semantic_conv import SemanticDecoder, SemanticEncoder
from xcodec.semantic.hubert import HubertEncoder
from xcodec.semantic.wavlm import WavLMEncoder

__all__ = ["XcodecDecoderOutput", "XcodecEncoderOutput", "XcodecModel", "XcodecOutput"]


@dataclasses.dataclass
class XcodecEncoderOutput:
    """audio_codes: (batch, num_quantizers, frames) int64."""

    audio_codes: torch.Tensor


@dataclasses.dataclass
class XcodecDecoderOutput:
    """audio_values: (batch, 1, frames * hop_length) float."""

    audio_values: torch.Tensor


@dataclasses.dataclass
class XcodecOutput:
    """audio_codes: (batch, num_quantizers, frames); audio_values: (batch, 1, samples), cut to the input length."""

    audio_codes: torch.Tensor
    audio_values: torch.Tensor


def build_semantic_model(config: HubertConfig | WavLMConfig) -> HubertEncoder | WavLMEncoder:
    """The frozen semantic teacher the config describes."""
    if isinstance(config, WavLMConfig):
        return WavLMEncoder(config)
    return HubertEncoder(config)


class XcodecModel(CodecModel):
    """X-Codec (v1) with the module layout of Transformers' ``XcodecModel``."""

    def __init__(self, config: XcodecConfig) -> None:
        super().__init__()
        self.config = config
        acoustic = config.acoustic_model_config
        assert acoustic.hidden_size is not None and acoustic.upsampling_ratios is not None
        self.acoustic_encoder = DacEncoder(
            acoustic.encoder_hidden_size, acoustic.downsampling_ratios, acoustic.hidden_size
        )
        # X-Codec's DAC decoder: output_padding = stride % 2 and no final tanh.
        self.acoustic_decoder = DacDecoder(
            acoustic.hidden_size,
            acoustic.decoder_hidden_size,
            acoustic.upsampling_ratios,
            odd_stride_output_padding=True,
            final_tanh=False,
        )
        self.encoder_semantic = SemanticEncoder(
            config.semantic_hidden_size,
            kernel_size=config.kernel_size,
            channel_ratios=config.channel_ratios,
            strides=config.strides,
            block_dilations=config.block_dilations,
            unit_kernel_size=config.unit_kernel_size,
        )
        self.decoder_semantic = SemanticDecoder(
            config.semantic_hidden_size,
            kernel_size=config.kernel_size,
            channel_ratios=config.channel_ratios,
            strides=config.strides,
            block_dilations=config.block_dilations,
            unit_kernel_size=config.unit_kernel_size,
        )
        self.semantic_model = build_semantic_model(config.semantic_model_config)
        self.fc = nn.Linear(config.hidden_size, config.hidden_size)
        self.fc1 = nn.Linear(config.hidden_size, config.semantic_hidden_size)
        self.fc2 = nn.Linear(config.hidden_size, config.acoustic_hidden_size)
        self.quantizer = ResidualVectorQuantizer(
            config.num_quantizers, config.codebook_size, config.hidden_size
        )
        self.eval()

    # ---- CodecModel interface -------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def target_bandwidths(self) -> tuple[float, ...]:
        """Bandwidths in kbps :meth:`encode` accepts; each uses ``bandwidth / 0.5`` codebooks."""
        return self.config.target_bandwidths

    # ---- encode / decode ----------------------------------------------------------

    def encode(self, input_values: torch.Tensor, bandwidth: float | None = None) -> XcodecEncoderOutput:
        """Waveform (batch, 1, samples) -> codes (batch, num_quantizers, frames) int64.

        ``bandwidth`` (kbps) must be one of ``config.target_bandwidths`` and picks the
        number of codebooks (``floor(bandwidth / 0.5)`` for the published models); None
        uses the highest. Frames: ``floor((samples - 80) / 320) + 1`` for the published
        models (the semantic teacher's count on the padded input).
        """
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise AudioError(
                f"X-Codec encodes mono audio shaped (batch, 1, samples), got {tuple(input_values.shape)}"
            )
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        _, _, num_samples = input_values.shape
        pad = self.hop_length // 2

        # The teacher is frozen; the reference never lets gradients reach it.
        with torch.no_grad():
            semantic_features = self.semantic_model.mean_hidden_states(
                F.pad(input_values[:, 0, :], (pad, pad))
            )
        semantic = self.encoder_semantic(semantic_features.transpose(1, 2))

        # The semantic branch sees the input padded by hop/2 on both sides; the acoustic
        # branch does not, unless its frame count would then disagree (as the reference).
        semantic_frames = semantic.shape[2]
        if self.acoustic_encoder.output_length(num_samples) == semantic_frames:
            acoustic = self.acoustic_encoder(input_values)
        elif self.acoustic_encoder.output_length(num_samples + 2 * pad) == semantic_frames:
            acoustic = self.acoustic_encoder(F.pad(input_values, (pad, pad)))
        else:
            raise AudioError(
                f"cannot align the acoustic and semantic frames for {num_samples} samples "
                f"({self.acoustic_encoder.output_length(num_samples)} vs {semantic_frames}); "
                "the audio is probably too short"
            )

        fused = torch.cat([acoustic, semantic], dim=1)
        embeddings = self.fc(fused.transpose(1, 2)).transpose(1, 2)
        return XcodecEncoderOutput(self.quantizer.encode(embeddings, num_quantizers))

    def decode(self, audio_codes: torch.Tensor) -> XcodecDecoderOutput:
        """Codes (batch, num_codebooks, frames), any num_codebooks up to the maximum ->
        waveform (batch, 1, frames * hop_length)."""
        if audio_codes.dim() != 3:
            raise ValueError(
                f"audio_codes must be (batch, num_codebooks, frames), got {tuple(audio_codes.shape)}"
            )
        _, num_codebooks, _ = audio_codes.shape
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise ValueError(
                f"audio_codes carry {num_codebooks} codebooks; this model decodes 1..{self.num_codebooks}"
            )
        if audio_codes.numel() and (
            int(audio_codes.min()) < 0 or int(audio_codes.max()) >= self.codebook_size
        ):
            raise ValueError(
                f"audio_codes must lie in 0..{self.codebook_size - 1}, "
                f"got {int(audio_codes.min())}..{int(audio_codes.max())}"
            )
        quantized = self.quantizer.decode(audio_codes.to(self.device))
        acoustic_latent = self.fc2(quantized.transpose(1, 2)).transpose(1, 2)
        return XcodecDecoderOutput(self.acoustic_decoder(acoustic_latent))

    def forward(
        self,
        input_values: torch.Tensor,
        audio_codes: torch.Tensor | None = None,
        bandwidth: float | None = None,
    ) -> XcodecOutput:
        """Encode (unless ``audio_codes`` are given) and decode, cut to the input length.

        input_values: (batch, 1, samples); audio_codes: (batch, num_codebooks, frames).
        """
        if audio_codes is None:
            audio_codes = self.encode(input_values, bandwidth).audio_codes
        audio_values = self.decode(audio_codes).audio_values[..., : input_values.shape[-1]]
        return XcodecOutput(audio_codes=audio_codes, audio_values=audio_values)

    # ---- padded batches -------------------------------------------------------------

    @torch.no_grad()
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Codes of a padded batch, each item's equal to encoding it alone.

        waveforms: (batch, samples), zero-padded past ``lengths`` (batch,).
        Items of one length are encoded together; X-Codec takes no padding mask (the
        teacher's GroupNorm and attention see every sample), so cropping each item is
        the only way to get the codes of its own audio.
        """
        if waveforms.dim() != 2:
            raise AudioError(f"waveforms must be (batch, samples), got {tuple(waveforms.shape)}")
        batch, num_samples = waveforms.shape
        if batch == 0:
            raise AudioError("tokenize got an empty batch")
        lengths = _full_lengths(lengths, batch, num_samples, "lengths")
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        encoded: dict[int, torch.Tensor] = {}
        for length, items in _groups_by_length(lengths):
            codes = self.encode(
                waveforms[items, None, :length].to(self.device, self.dtype), bandwidth
            ).audio_codes
            for row, item in enumerate(items.tolist()):
                encoded[item] = codes[row]
        max_frames = max(codes.shape[-1] for codes in encoded.values())
        audio_codes = torch.zeros(batch, num_quantizers, max_frames, dtype=torch.long, device=self.device)
        code_lengths = torch.zeros(batch, dtype=torch.long)
        for item, codes in encoded.items():
            audio_codes[item, :, : codes.shape[-1]] = codes
            code_lengths[item] = codes.shape[-1]
        return TokenizeResult(audio_codes=audio_codes, code_lengths=code_lengths)

    @torch.no_grad()
    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        """Audio (batch, samples) of padded codes (batch, num_codebooks, frames), each item decoded alone.

        The decoder's receptive field spans many frames, so padding frames would change
        the end of a shorter item; items of one length are decoded together.
        """
        if audio_codes.dim() != 3:
            raise ValueError(
                f"audio_codes must be (batch, num_codebooks, frames), got {tuple(audio_codes.shape)}"
            )
        batch, _, frames = audio_codes.shape
        if batch == 0:
            raise ValueError("detokenize got an empty batch")
        code_lengths = _full_lengths(code_lengths, batch, frames, "code_lengths")
        audio = torch.zeros(
            batch, int(code_lengths.max()) * self.hop_length, dtype=self.dtype, device=self.device
        )
        lengths = torch.zeros(batch, dtype=torch.long)
        for num_frames, items in _groups_by_length(code_lengths):
            values = self.decode(audio_codes[items, :, :num_frames]).audio_values[:, 0]
            audio[items.to(self.device), : values.shape[-1]] = values
            lengths[items] = values.shape[-1]
        return DetokenizeResult(audio=audio, lengths=lengths)

    # ---- checkpoints (the I/O lives in xcodec.checkpoints.xcodec) --------------------

    @classmethod
    def from_pretrained(
        cls,
        id_or_path: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
    ) -> XcodecModel:
        """Load a Transformers-layout (``hf-audio/xcodec-*``) or original-layout checkpoint."""
        from xcodec.checkpoints.common import resolve_checkpoint
        from xcodec.checkpoints.xcodec import load_xcodec

        path = resolve_checkpoint(
            id_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        return load_xcodec(path, device=device, dtype=dtype)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write the Transformers layout (config.json, model.safetensors, preprocessor_config.json)."""
        from xcodec.checkpoints.xcodec import save_xcodec

        save_xcodec(self, Path(folder))


def _full_lengths(lengths: torch.Tensor | None, batch: int, full: int, name: str) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), full, dtype=torch.long)
    lengths = torch.as_tensor(lengths).to("cpu", torch.long)
    if lengths.shape != (batch,):
        raise ValueError(f"{name} must be shaped ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > full):
        raise ValueError(f"{name} must lie in 1..{full}, got {lengths.tolist()}")
    return lengths


def _groups_by_length(lengths: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(length, item indices) for each distinct length, longest first."""
    for length in sorted(set(lengths.tolist()), reverse=True):
        yield int(length), torch.nonzero(lengths == length).flatten()
