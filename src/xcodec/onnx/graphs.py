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

from xcodec.fbank import (
    KALDI_WAVEFORM_SCALE,
    LOG_FLOOR,
    POVEY_EXPONENT,
    PREEMPHASIS_COEFFICIENT,
    kaldi_mel_banks,
)
from xcodec.features import NORMALISATION_EPSILON, Xcodec2FeatureExtractor
from xcodec.layers.alias_free import AntiAliasedActivation1d
from xcodec.layers.istft import ISTFTHead
from xcodec.layers.local_attention import LocalSelfAttention
from xcodec.models.distill_neucodec import DistillNeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Decoder, Xcodec2Model
from xcodec.ops.masking import attention_key_mask, lengths_to_mask, zero_padding
from xcodec.semantic.w2v_bert import RelativeKeySelfAttention

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
        # Two slices, not ``chunk``: chunk exports as a tensor sequence, which onnxruntime's
        # float16 converter cannot wrap in casts (export.convert_float16).
        projected = self.linear(x)
        bins = self.n_fft // 2 + 1
        log_magnitude, phase = projected[..., :bins], projected[..., bins:]
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

    def __init__(self, model: Xcodec2Model | DistillNeuCodecModel) -> None:
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


class KaldiFbankGraph(nn.Module):
    """X-Codec2's semantic features from its padded audio, in exportable operations.

    :meth:`xcodec.features.Xcodec2FeatureExtractor.features_from_padded` with per-item
    lengths as a tensor: Kaldi log-mel (:func:`xcodec.fbank.kaldi_fbank`: DC removal,
    pre-emphasis, povey window, power spectrum, mel filters, log), per-item mean/variance
    normalisation over each item's own frames, ``stride`` frames stacked per row.

    input_values (batch, samples), counts (batch,) samples each item's padding mask marks
    -> features (batch, rows, stride * num_mel_bins), rows = ceil(fbank frames / stride) (X-Codec2:
    samples // hop; NeuCodec one fewer), and the row mask (batch, rows) bool.
    """

    def __init__(self, extractor: Xcodec2FeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.edge = extractor.fbank_edge_padding()
        self.fft_size = 1 << (extractor.frame_length - 1).bit_length()
        self.window: torch.Tensor
        self.banks: torch.Tensor
        self.register_buffer("window", _povey_window(extractor.frame_length), persistent=False)
        banks = kaldi_mel_banks(
            extractor.num_mel_bins,
            self.fft_size,
            extractor.sampling_rate,
            high_freq=float(extractor.sampling_rate // 2),
        )
        self.register_buffer("banks", banks.T.contiguous(), persistent=False)

    def forward(self, input_values: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ex = self.extractor
        B, _ = input_values.shape
        waveforms = F.pad(input_values * KALDI_WAVEFORM_SCALE, (self.edge, self.edge))
        # Kaldi's snip_edges framing as a gather (``unfold`` exports as a strided gather
        # whose bounds onnxruntime rejects on other lengths): (batch, frames, frame_length).
        num_frames = 1 + (waveforms.shape[-1] - ex.frame_length) // ex.frame_shift
        starts = torch.arange(num_frames) * ex.frame_shift
        frames = waveforms[:, starts[:, None] + torch.arange(ex.frame_length)[None, :]]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - PREEMPHASIS_COEFFICIENT * previous) * self.window
        power = torch.fft.rfft(frames, n=self.fft_size).abs().pow(2.0)
        log_mel = (power @ self.banks).clamp_min(LOG_FLOOR).log()  # (batch, frames, mel)
        # Item of count c samples (its "always pad" sample included): padded_length = ceil(c / hop) * hop.
        hop = ex.hop_length
        padded = torch.div(counts + hop - 1, hop, rounding_mode="floor") * hop
        per_item = 1 + torch.div(
            padded + 2 * self.edge - ex.frame_length, ex.frame_shift, rounding_mode="floor"
        )
        valid = lengths_to_mask(per_item, num_frames)[:, :, None]  # (batch, frames, 1)
        count = per_item.to(log_mel.dtype)[:, None, None]
        zero = torch.zeros((), dtype=log_mel.dtype)
        mean = torch.where(valid, log_mel, zero).sum(dim=1, keepdim=True) / count
        centred = torch.where(valid, log_mel - mean, zero)
        variance = centred.square().sum(dim=1, keepdim=True) / (count - 1).clamp_min(1)
        normalised = (log_mel - mean) / torch.sqrt(variance + NORMALISATION_EPSILON)
        fill = torch.full((), ex.padding_value, dtype=log_mel.dtype)
        normalised = torch.where(valid, normalised, fill)
        # Rows of `stride` frames (the last one completed with the fill value).
        rows = (num_frames + ex.stride - 1) // ex.stride
        needed = rows * ex.stride
        normalised = torch.cat([normalised, fill.expand(B, needed - num_frames, ex.num_mel_bins)], dim=1)[
            :, :needed
        ]
        features = normalised.reshape(B, rows, ex.stride * ex.num_mel_bins)
        row_mask = lengths_to_mask(torch.div(per_item, ex.stride, rounding_mode="floor"), rows)
        return features, row_mask


class Xcodec2EncoderGraph(nn.Module):
    """X-Codec2 / NeuCodec encoder: padded audio and its mask in, codes and their mask out.

    input_values (batch, 1, samples) at the input rate, each item followed by the feature
    extractor's padding (one zero, then zeros to a multiple of the hop, then the batch's);
    padding_mask (batch, samples) int64, 1 on each item's samples and its one "always pad"
    zero -> audio_codes (batch, 1, frames) int64, 0 past each item's codes, and
    audio_codes_mask (batch, frames) int64. Each item's codes are its alone-run's.
    """

    def __init__(self, model: Xcodec2Model) -> None:
        super().__init__()
        self.model = model
        self.fbank = KaldiFbankGraph(model._feature_extractor())

    def forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        counts = padding_mask.to(torch.long).sum(dim=-1)
        features, _ = self.fbank(input_values[:, 0, :], counts)
        encoded = self.model.encode(input_values, features, padding_mask=padding_mask, batch_invariant=True)
        assert encoded.code_lengths is not None
        codes = zero_padding(encoded.audio_codes.to(torch.long), encoded.code_lengths)
        mask = lengths_to_mask(encoded.code_lengths, codes.shape[-1]).to(torch.long)
        return codes, mask


class XcodecEncoderGraph(nn.Module):
    """X-Codec encoder at its full bandwidth (the first k rows are the codes at a k-codebook bandwidth).

    input_values (batch, 1, samples), zero-padded to a multiple of the hop; padding_mask
    (batch, samples) int64, 1 on each item's samples -> audio_codes (batch, num_codebooks,
    frames) int64, 0 past each item's codes, and audio_codes_mask (batch, frames) int64.
    """

    def __init__(self, model: XcodecModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = padding_mask.to(torch.long).sum(dim=-1)
        encoded = self.model._encode(input_values, self.model.num_codebooks, lengths)
        assert encoded.code_lengths is not None
        codes = zero_padding(encoded.audio_codes.to(torch.long), encoded.code_lengths)
        mask = lengths_to_mask(encoded.code_lengths, codes.shape[-1]).to(torch.long)
        return codes, mask


class DistillNeuCodecEncoderGraph(nn.Module):
    """DistillNeuCodec encoder: audio of ONE padded length per call in, codes and their mask out.

    input_values (batch, 1, samples), samples a multiple of 320, every item's own padded
    length (its samples, one "always pad" zero, zeros to the next multiple of 320):
    DistillNeuCodec's GroupNorm and GRN normalise over the whole input, so an item padded
    further would get other codes, and the runtime groups items of equal padded length
    (as ``DistillNeuCodecModel.tokenize`` does). padding_mask (batch, samples) int64, 1 on
    the item's samples and its "always pad" zero -> audio_codes (batch, 1, samples / 320)
    int64, and audio_codes_mask (batch, frames) int64 (all ones for items grouped so).
    """

    def __init__(self, model: DistillNeuCodecModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        counts = padding_mask.to(torch.long).sum(dim=-1)
        codes = self.model.encode(input_values).audio_codes.to(torch.long)
        hop = self.model.encoder_hop_length
        # counts include the "always pad" zero: ceil(count / hop) = n // hop + 1 codes, the model's count.
        code_lengths = torch.div(counts + hop - 1, hop, rounding_mode="floor")
        codes = zero_padding(codes, code_lengths)
        mask = lengths_to_mask(code_lengths, codes.shape[-1]).to(torch.long)
        return codes, mask


def encoder_graph(model: Xcodec2Model | XcodecModel | DistillNeuCodecModel) -> nn.Module:
    """The exportable encoder wrapper for ``model`` (X-Codec2, NeuCodec, DistillNeuCodec or X-Codec)."""
    if isinstance(model, Xcodec2Model):
        return Xcodec2EncoderGraph(model)
    if isinstance(model, DistillNeuCodecModel):
        return DistillNeuCodecEncoderGraph(model)
    return XcodecEncoderGraph(model)


def local_window_attention(
    attention: LocalSelfAttention, x: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """:meth:`LocalSelfAttention.forward` in exportable operations; same weights, same output.

    The module scores its windows a group at a time (a Python loop over the window count)
    and marks the first window's missing predecessor with an in-place write; here every
    window is scored at once and that mask is one broadcast ``or``.
    x (batch, frames, dim), bias (heads, window, 2 window) -> (batch, frames, dim).
    """
    B, N, _ = x.shape
    w, heads, head_dim = attention.window, attention.heads, attention.head_dim
    projected = attention.to_qkv(attention.norm(x))
    width = heads * head_dim
    pad = (w - N % w) % w
    windows = (N + pad) // w

    def split(t: torch.Tensor) -> torch.Tensor:
        # (B, N, heads * head_dim) -> (B, heads, windows, w, head_dim)
        t = F.pad(t, (0, 0, 0, pad))
        return t.reshape(B, windows, w, heads, head_dim).permute(0, 3, 1, 2, 4)

    query = split(projected[..., :width]) * head_dim**-0.5
    key, value = split(projected[..., width : 2 * width]), split(projected[..., 2 * width :])
    key = torch.cat([F.pad(key, (0, 0, 0, 0, 1, 0))[:, :, :-1], key], dim=3)
    value = torch.cat([F.pad(value, (0, 0, 0, 0, 1, 0))[:, :, :-1], value], dim=3)
    position = torch.arange(2 * w)
    causal = position[None, :] > position[w:, None]  # (w, 2w)
    first = (torch.arange(windows) == 0)[:, None, None] & (position < w)[None, None, :]  # (windows, 1, 2w)
    masked = causal[None] | first  # (windows, w, 2w)
    scores = query @ key.transpose(-1, -2)  # (B, heads, windows, w, 2w)
    if bias is not None:
        scores = scores + bias[None, :, None]
    scores = scores.masked_fill(masked, -torch.finfo(scores.dtype).max)
    out = scores.softmax(dim=-1) @ value  # (B, heads, windows, w, head_dim)
    out = out.permute(0, 2, 3, 1, 4).reshape(B, windows * w, width)[:, :N]
    return attention.to_out(out)


def relative_key_attention(
    attention: RelativeKeySelfAttention, hidden_states: torch.Tensor, key_valid: torch.Tensor | None
) -> torch.Tensor:
    """:meth:`RelativeKeySelfAttention.forward` in exportable operations; same weights, same output.

    The module lays its relative-position bias out with ``as_strided`` and Python branches
    on the frame count; ONNX gets a gather with a (frames, frames) distance index instead,
    and the attention written out (softmax of scaled scores plus bias), all queries at once.
    hidden_states (batch, frames, hidden), key_valid (batch, frames) bool -> (batch, frames, hidden).
    """
    B, T, C = hidden_states.shape
    heads, head_dim = attention.num_heads, attention.head_dim

    def split(linear: nn.Linear) -> torch.Tensor:
        return linear(hidden_states).reshape(B, T, heads, head_dim).transpose(1, 2)

    query, key, value = split(attention.linear_q), split(attention.linear_k), split(attention.linear_v)
    scores = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling  # (batch, heads, T, T)
    if attention.distance_embedding is not None:
        table = attention.distance_embedding.weight.to(query.dtype)
        per_distance = torch.matmul(query, table.T) * attention.scaling  # (batch, heads, T, distances)
        position = torch.arange(T)
        distance = (position[None, :] - position[:, None]).clamp(
            -attention.left, attention.right
        ) + attention.left
        scores = scores + per_distance.gather(-1, distance.expand(B, heads, T, T))
    if key_valid is not None:
        lowest = torch.full((), torch.finfo(scores.dtype).min, dtype=scores.dtype)
        scores = torch.where(key_valid[:, None, None, :], scores, lowest)
    context = torch.matmul(scores.softmax(dim=-1), value)  # (batch, heads, T, head_dim)
    return attention.linear_out(context.transpose(1, 2).reshape(B, T, C))


def _replicate_rows(rows: torch.Tensor, lengths: torch.Tensor | None, left: int, right: int) -> torch.Tensor:
    """(batch, time, channels) -> (batch, left + time + right, channels), each item replicate-padded
    at its own end: step ``i`` reads row ``clamp(i - left, 0, length - 1)``, one gather.

    Steps more than ``right`` past an item's end also read its last row here (the module leaves
    them as they were); no valid output reads them, so valid outputs are the same.
    """
    B, T, C = rows.shape
    steps = torch.arange(left + T + right)[None, :] - left  # (1, padded)
    last = (
        torch.full((B, 1), T - 1)
        if lengths is None
        else (lengths.to(torch.long) - 1).clamp(0, T - 1)[:, None]
    )
    index = torch.minimum(steps.clamp_min(0), last)  # (batch, padded)
    return rows.gather(1, index[:, :, None].expand(B, left + T + right, C))


def antialiased_activation(
    module: AntiAliasedActivation1d, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """:class:`AntiAliasedActivation1d`'s polyphase forward without in-place writes; same taps, same order.

    The module fills preallocated buffers by slices and per-item scatters, which the
    exporter turns into ScatterND / ScatterElements over whole tensors, one per write
    (they took about 75% of the X-Codec2 encoder's onnxruntime time, bench/RESULTS.md). Here
    each phase is a sum of shifted slices, the phases are interleaved to the high rate by a
    reshape, the replicate padding is one gather per rate and the downsampler reads
    strided slices: the same products summed in the same order.
    x (batch, channels, time), lengths (batch,) or None -> (batch, channels, time).
    """
    taps = module._polyphase
    if taps is None:
        return module.reference_forward(x, lengths)
    B, C, T = x.shape
    r = taps.ratio
    up_left = max(0, -min(offset for phase_taps in taps.up for offset, _ in phase_taps))
    up_right = max(0, max(offset for phase_taps in taps.up for offset, _ in phase_taps))
    rows = _replicate_rows(x.transpose(1, 2), lengths, up_left, up_right)  # (B, up_left + T + up_right, C)
    phases = []
    for phase_taps in taps.up:
        (offset, weight), *rest = phase_taps
        summed = rows[:, up_left + offset : up_left + offset + T] * weight
        for offset, weight in rest:
            summed = summed + rows[:, up_left + offset : up_left + offset + T] * weight
        phases.append(summed)
    act = module.act
    frequency = act.alpha.exp().to(x.dtype)
    inverse_magnitude = (1.0 / (act.beta.exp() + act.no_div_by_zero)).to(x.dtype)
    high = torch.stack(phases, dim=2).reshape(B, r * T, C)  # sample r * j + p = phase p at j
    high = high + torch.sin(high * frequency).square() * inverse_magnitude
    # Output j reads high-rate sample r * (j + offset) + phase; pad so every read is in range.
    down_left = max(0, -min(r * offset + phase for phase, offset, _ in taps.down))
    down_right = max(0, max(r * offset + phase for phase, offset, _ in taps.down) - (r - 1))
    high_lengths = None if lengths is None else lengths.to(torch.long) * r
    high = _replicate_rows(high, high_lengths, down_left, down_right)
    (phase, offset, weight), *later = taps.down
    start = down_left + r * offset + phase
    output = high[:, start : start + r * T : r] * weight
    for phase, offset, weight in later:
        start = down_left + r * offset + phase
        output = output + high[:, start : start + r * T : r] * weight
    return output.transpose(1, 2)


def _povey_window(frame_length: int) -> torch.Tensor:
    """Kaldi's povey window, as :func:`xcodec.fbank.kaldi_fbank` builds it."""
    return torch.hann_window(frame_length, periodic=False).pow(POVEY_EXPONENT)


def decoder_graph(model: Xcodec2Model | XcodecModel | DistillNeuCodecModel) -> nn.Module:
    """The exportable decoder wrapper for ``model`` (X-Codec2, NeuCodec, DistillNeuCodec or X-Codec);
    DistillNeuCodec's decoder is NeuCodec's, so is its graph."""
    if isinstance(model, (Xcodec2Model, DistillNeuCodecModel)):
        return Xcodec2DecoderGraph(model)
    return XcodecDecoderGraph(model)
