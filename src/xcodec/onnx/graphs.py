"""Export-friendly wrappers around the codec modules: what ``encoder.onnx`` and ``decoder.onnx`` compute.

The models' own forward passes take fast paths chosen by Python branches on tensor values
(``lengths_if_padded`` skips the masks for a full batch) and the X-Codec2 ISTFT head uses
``torch.polar`` and ``F.fold``, which ONNX cannot express as they are. These wrappers run
the same submodules (so the weights and the arithmetic are the model's) but

* always take the masked, batch-invariant path: lengths are graph inputs, so one graph
  serves full and padded batches, and an item's output equals its alone-run (a full item's
  masks are all ones: same values as the plain path, to float rounding);
* replace the ISTFT head by :class:`OverlapAddISTFT`, the same "same"-padded inverse STFT
  written as two matrix products (the inverse real DFT with the window folded in) and an
  overlap-add by shifted sums, which export at every opset and have no length cap.

Graph inputs and outputs (names are those in ``config.json``):

decoder: ``audio_codes`` (batch, num_codebooks, frames) int64, ``audio_codes_mask`` (batch,
frames) int64 ones on each item's valid prefix -> ``audio_values`` (batch, 1, samples) float,
zero past each item's end, and ``padding_mask`` (batch, samples) int64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.istft import ISTFTHead
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Decoder, Xcodec2Model
from xcodec.ops.masking import attention_key_mask, lengths_to_mask, zero_padding

__all__ = [
    "OverlapAddISTFT",
    "Xcodec2DecoderGraph",
    "XcodecDecoderGraph",
    "decoder_graph",
]


class OverlapAddISTFT(nn.Module):
    """:class:`~xcodec.layers.istft.ISTFTHead` in exportable operations; same weights, same output.

    (batch, frames, hidden), lengths (batch,) -> (batch, 1, frames * hop_length).

    The inverse real FFT of each frame is a product with fixed cosine and sine bases (the
    Hann window folded in, so one product gives the windowed frame); the DC and Nyquist
    bins' imaginary parts are ignored, as ``irfft`` ignores them. The overlap-add cuts each
    frame into ``n_fft / hop`` blocks of one hop and sums block k of frame f into output
    block f + k: shifted adds, no fold/Col2Im and no precomputed window sum, so any length
    works. Needs ``n_fft`` a multiple of the hop (X-Codec2: 1280 / 320, NeuCodec: 1920 / 480).
    The envelope (summed squared window) is built the same way from each item's valid
    frames, so a padded item tapers at its own end, as it does alone.
    """

    def __init__(self, head: ISTFTHead) -> None:
        super().__init__()
        n_fft, hop = head.n_fft, head.hop_length
        if n_fft % hop or (n_fft - hop) % 2:
            raise ValueError(f"n_fft {n_fft} must be a multiple of hop {hop} with an even difference")
        self.linear = head.linear
        self.n_fft, self.hop_length = n_fft, hop
        self.overlap = n_fft // hop
        self.padding = (n_fft - hop) // 2
        bins = n_fft // 2 + 1
        # irfft (norm "backward"): x[n] = (1/N) sum_k w_k (Re X_k cos(2 pi k n / N) - Im X_k sin(...)),
        # w_k = 1 for DC and Nyquist, 2 otherwise. Built in float64, stored in float32.
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        weight[-1] = 1.0
        window = torch.hann_window(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * k * n / n_fft
        cos_basis = weight * torch.cos(angle) * window / n_fft
        sin_basis = -weight * torch.sin(angle) * window / n_fft
        sin_basis[0] = 0.0
        sin_basis[-1] = 0.0
        self.cos_basis: torch.Tensor
        self.sin_basis: torch.Tensor
        self.window_square: torch.Tensor
        self.register_buffer("cos_basis", cos_basis.float(), persistent=False)
        self.register_buffer("sin_basis", sin_basis.float(), persistent=False)
        self.register_buffer("window_square", window.square().float(), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (batch, num_frames, n_fft) -> (batch, num_frames * hop), the "same" crop applied."""
        B, T, _ = frames.shape
        blocks = frames.reshape(B, T, self.overlap, self.hop_length)
        total = T + self.overlap - 1
        summed = F.pad(blocks[:, :, 0, :], (0, 0, 0, self.overlap - 1))
        for k in range(1, self.overlap):
            summed = summed + F.pad(blocks[:, :, k, :], (0, 0, k, self.overlap - 1 - k))
        flat = summed.reshape(B, total * self.hop_length)
        return flat[:, self.padding : self.padding + T * self.hop_length]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: (batch, frames, hidden); lengths: (batch,) valid frames -> (batch, 1, frames * hop)."""
        log_magnitude, phase = self.linear(x).chunk(2, dim=-1)
        magnitude = log_magnitude.float().exp().clamp(max=1e2)
        phase = phase.float()
        real, imaginary = magnitude * torch.cos(phase), magnitude * torch.sin(phase)
        frames = real @ self.cos_basis + imaginary @ self.sin_basis  # (batch, frames, n_fft), windowed
        valid = lengths_to_mask(lengths, x.shape[1])[:, :, None]  # (batch, frames, 1)
        frames = torch.where(valid, frames, torch.zeros((), dtype=frames.dtype))
        audio = self._overlap_add(frames)
        envelope = self._overlap_add(valid.to(frames.dtype) * self.window_square)
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)


class Xcodec2DecoderGraph(nn.Module):
    """X-Codec2 / NeuCodec decoder, codes and mask in, audio and mask out (see the module docstring)."""

    def __init__(self, model: Xcodec2Model) -> None:
        super().__init__()
        self.quantizer = model.quantizer
        self.decoder: Xcodec2Decoder = model.acoustic_decoder
        self.head = OverlapAddISTFT(self.decoder.head)
        self.hop_length = model.hop_length

    def forward(
        self, audio_codes: torch.Tensor, audio_codes_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio_codes (batch, 1, frames), audio_codes_mask (batch, frames) ->
        audio_values (batch, 1, frames * hop), padding_mask (batch, frames * hop)."""
        lengths = audio_codes_mask.to(torch.long).sum(dim=-1)
        decoder = self.decoder
        # Xcodec2Decoder.forward with lengths always given and the exportable head; the
        # rotation over heads is skipped as there (it cannot change attention, see its docstring).
        x = decoder.fc(self.quantizer.from_indices(audio_codes[:, 0, :]))
        x = decoder.embed(zero_padding(x, lengths, dim=1).transpose(1, 2)).transpose(1, 2)
        for block in decoder.prior_net:
            x = block(x, lengths)
        attention_mask = attention_key_mask(lengths, x.shape[1])
        for layer in decoder.layers:
            x = layer(x, None, attention_mask)
        for block in decoder.post_net:
            x = block(x, lengths)
        audio = self.head(decoder.norm(x), lengths)
        sample_lengths = lengths * self.hop_length
        audio = zero_padding(audio, sample_lengths)
        padding_mask = lengths_to_mask(sample_lengths, audio.shape[-1]).to(torch.long)
        return audio, padding_mask


class XcodecDecoderGraph(nn.Module):
    """X-Codec decoder: codes (batch, num_codebooks, frames) and mask in, audio and mask out."""

    def __init__(self, model: XcodecModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, audio_codes: torch.Tensor, audio_codes_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio_codes (batch, num_codebooks, frames), audio_codes_mask (batch, frames) ->
        audio_values (batch, 1, frames * hop), padding_mask (batch, frames * hop)."""
        model = self.model
        lengths = audio_codes_mask.to(torch.long).sum(dim=-1)
        audio_codes = zero_padding(audio_codes, lengths)
        quantized = self._dequantize(audio_codes)
        latent = model.fc2(quantized.transpose(1, 2)).transpose(1, 2)
        decoder = model.acoustic_decoder
        audio = decoder(latent, lengths)
        sample_lengths = decoder.output_lengths(lengths)
        audio = zero_padding(audio, sample_lengths)
        padding_mask = lengths_to_mask(sample_lengths, audio.shape[-1]).to(torch.long)
        return audio, padding_mask

    def _dequantize(self, audio_codes: torch.Tensor) -> torch.Tensor:
        """``ResidualVectorQuantizer.decode`` for a graph-time number of codebooks (the bandwidth).

        The quantizer loops over the codebooks given, which would fix their number in the
        graph; here every stage runs and the ones past the input's count add zeros (the sum
        stays first to last, so the float result is the quantizer's exactly).
        """
        B, num_stages, T = audio_codes.shape
        stages = self.model.quantizer.stages
        missing = torch.zeros(B, len(stages) - num_stages, T, dtype=audio_codes.dtype)
        codes = torch.cat([audio_codes, missing], dim=1)
        quantized = stages[0].decode(codes[:, 0])
        zero = torch.zeros((), dtype=quantized.dtype)
        given = torch.arange(len(stages)) < num_stages  # (stages,) bool, a graph-time value
        for index in range(1, len(stages)):
            quantized = quantized + torch.where(given[index], stages[index].decode(codes[:, index]), zero)
        return quantized


def decoder_graph(model: Xcodec2Model | XcodecModel) -> nn.Module:
    """The exportable decoder wrapper for ``model`` (X-Codec2, NeuCodec or X-Codec)."""
    if isinstance(model, Xcodec2Model):
        return Xcodec2DecoderGraph(model)
    return XcodecDecoderGraph(model)
