"""X-Codec2: 16 kHz speech <-> one stream of FSQ codes at 50 Hz (Ye et al. 2025, "Llasa").

Data path (shapes for the default config, hop 320):

    input_features (B, F, 160) --W2V-BERT (16 layers)--> (B, F, 1024) --semantic_adapter--> (B, 1024, F)
    input_values (B, 1, 320 F) --acoustic_encoder------------------------------------------> (B, 1024, F)
    concat -> fc_encoder -> quantizer (FSQ, 4^8 codes) -> audio_codes (B, 1, F)
    codes -> project_out -> acoustic_decoder (Vocos: ResNet, transformer, ResNet, ISTFT) -> (B, 1, 320 F)

Submodule names equal Transformers' ``Xcodec2Model`` so state-dict keys are identical.
This file does no I/O: ``from_pretrained``/``save_pretrained`` (from
:class:`~xcodec.base.PretrainedMixin`) reach :mod:`xcodec.checkpoints.xcodec2` through
the loader registry (:mod:`xcodec.registry`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.errors import ArgumentError
from xcodec.layers.causal import CausalConv1d, CausalSelfAttention
from xcodec.layers.fsq import ProjectedFSQ
from xcodec.layers.istft import ISTFTHead
from xcodec.layers.transformer import RotaryEmbedding, TransformerLayer
from xcodec.ops.masking import (
    attention_key_mask,
    lengths_if_padded,
    lengths_to_mask,
    mask_to_lengths,
    zero_padding,
)
from xcodec.semantic.w2v_bert import Wav2Vec2BertEncoder
from xcodec.stages.bigcodec import AcousticEncoder
from xcodec.stages.causal_vocos import CausalResNetBlock
from xcodec.stages.vocos import ResNetBlock

if TYPE_CHECKING:
    from xcodec.features import Xcodec2FeatureExtractor

__all__ = [
    "Xcodec2DecoderOutput",
    "Xcodec2EncoderOutput",
    "Xcodec2Model",
    "Xcodec2Output",
]


@dataclasses.dataclass
class Xcodec2EncoderOutput:
    """Result of :meth:`Xcodec2Model.encode`.

    audio_codes: (batch, 1, frames) int32 code indices (Transformers returns int32 too).
    audio_codes_mask: 1 where a frame lies wholly inside the unpadded audio, same dtype as
        ``padding_mask``; (batch, frames) for a (batch, samples) padding mask, (batch, 1,
        frames) for a (batch, 1, samples) one; None without a padding mask.
    latents: (batch, quantization_dim, frames) quantised latents if asked for, else None.
    code_lengths: (batch,) int64 frames each item gets when encoded alone,
        ``ceil(padding_mask count / hop_length)``; None without a padding mask.
    """

    audio_codes: torch.Tensor
    audio_codes_mask: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    code_lengths: torch.Tensor | None = None


@dataclasses.dataclass
class Xcodec2DecoderOutput:
    """audio_values: (batch, 1, frames * hop_length) float waveform."""

    audio_values: torch.Tensor


@dataclasses.dataclass
class Xcodec2Output:
    """Result of :meth:`Xcodec2Model.forward` (encode then decode).

    audio_values: (batch, 1, samples), cut to the input length. audio_codes, latents,
    audio_codes_mask, code_lengths: as in :class:`Xcodec2EncoderOutput` (latents only if asked for).
    """

    audio_values: torch.Tensor
    audio_codes: torch.Tensor
    latents: torch.Tensor | None = None
    audio_codes_mask: torch.Tensor | None = None
    code_lengths: torch.Tensor | None = None


class Xcodec2SemanticAdapter(nn.Module):
    """Four 3-tap convs with a skip over the middle two: (batch, C, frames) -> (batch, C, frames)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.conv4 = nn.Conv1d(channels, channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """lengths: (batch,) valid frames or None; padding is zeroed before each 3-tap conv."""
        x = torch.relu(self.conv1(zero_padding(x, lengths)))
        x = x + self.conv3(zero_padding(torch.relu(self.conv2(zero_padding(x, lengths))), lengths))
        return self.conv4(zero_padding(x, lengths))


class Xcodec2Decoder(nn.Module):
    """Vocos decoder: (batch, frames, quantization_dim) -> (batch, 1, frames * hop_length).

    ``config.decoder_causal`` (X-Codec2-Streaming) builds the causal variant with the same
    parameters: left-padded convs (:class:`~xcodec.layers.causal.CausalConv1d`), per-frame
    normalisation in the ResNet blocks (:mod:`xcodec.stages.causal_vocos`) and attention over
    the last ``decoder_attention_window`` frames
    (:class:`~xcodec.layers.causal.CausalSelfAttention`); the final norm and the ISTFT head
    are unchanged. It streams exactly with a bounded state (:mod:`xcodec.streaming`).

    Quirk ``rotary over heads`` (X-Codec2's original code, kept by Transformers 5.23): the
    rotary embedding is indexed by the head number, not by time. Head h rotates its
    queries and keys alike by angles h * inv_freq, and a rotation applied to both sides of
    a dot product cancels, so the attention scores (and the output) are those of attention
    with no position information at all; the decoder transformer is position-blind.
    So by default we skip the rotation (5% of the decode time): outputs change by float
    rounding only. ``rotate_over_heads = True`` applies it, for the reference's exact
    order of operations. Pinned by tests/test_xcodec2_model.py
    (``test_decoder_rotary_over_heads_is_position_blind``, ``test_rotation_over_heads_is_optional``
    and the parity tests, which run without it).
    """

    def __init__(self, config: Xcodec2Config) -> None:
        super().__init__()
        hidden = config.hidden_size
        head_dim = config.head_dim or hidden // config.num_attention_heads
        self.num_attention_heads = config.num_attention_heads
        self.causal = config.decoder_causal
        self.fc = nn.Linear(config.quantization_dim, hidden)
        block: type[ResNetBlock] | type[CausalResNetBlock] = CausalResNetBlock if self.causal else ResNetBlock
        self.embed = (
            CausalConv1d(hidden, hidden, kernel_size=7)
            if self.causal
            else nn.Conv1d(hidden, hidden, kernel_size=7, padding=3)
        )
        self.prior_net = nn.ModuleList([block(hidden, dropout=config.activation_dropout) for _ in range(2)])
        self.rotary_emb = RotaryEmbedding(head_dim, config.rope_theta)
        self.rotate_over_heads = False
        self.layers = nn.ModuleList(
            TransformerLayer(
                hidden,
                config.intermediate_size,
                config.num_attention_heads,
                config.num_key_value_heads or config.num_attention_heads,
                head_dim,
                eps=config.rms_norm_eps,
                activation=config.hidden_act,
                attention_bias=config.attention_bias,
                attention_dropout=config.attention_dropout,
            )
            for _ in range(config.num_hidden_layers)
        )
        if self.causal:
            # X-Codec2-Streaming: same parameters, attention over the last window frames only.
            for layer in self.layers:
                assert isinstance(layer, TransformerLayer)
                layer.self_attn = CausalSelfAttention(
                    hidden,
                    config.num_attention_heads,
                    config.num_key_value_heads or config.num_attention_heads,
                    head_dim,
                    config.decoder_attention_window,
                    bias=config.attention_bias,
                    dropout=config.attention_dropout,
                )
        self.post_net = nn.ModuleList([block(hidden, dropout=config.activation_dropout) for _ in range(2)])
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.head = ISTFTHead(hidden, config.n_fft, config.hop_length)

    def forward(self, latents: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """latents: (batch, frames, quantization_dim); lengths: (batch,) valid frames or None.

        With ``lengths`` each item's first ``lengths * hop_length`` samples equal its alone-run.
        """
        return self.head(self.features(latents, lengths), lengths)

    def features(self, latents: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Everything before the ISTFT head (the part a stream decodes per window, see
        :mod:`xcodec.streaming`): (batch, frames, quantization_dim) -> (batch, frames, hidden)."""
        x = self.fc(latents)
        x = self.embed(zero_padding(x, lengths, dim=1).transpose(1, 2)).transpose(1, 2)
        for block in self.prior_net:
            x = block(x, lengths)
        rotary = None
        if self.rotate_over_heads:
            # Quirk "rotary over heads" (see the class docstring): positions are head indices,
            # cos/sin (heads, head_dim) broadcast as (1, heads, 1, head_dim).
            head_index = torch.arange(self.num_attention_heads, device=x.device)
            cos, sin = self.rotary_emb(head_index, x.dtype)
            rotary = (cos[None, :, None, :], sin[None, :, None, :])
        attention_mask = None if lengths is None else attention_key_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, rotary, attention_mask)
        for block in self.post_net:
            x = block(x, lengths)
        return self.norm(x)


class Xcodec2Model(CodecModel):
    """X-Codec2 codec; the Transformers ``Xcodec2Model`` computation with native modules.

    ``encode``/``decode``/``forward`` keep the Transformers argument names. Inputs come
    from the X-Codec2 feature extractor (:class:`xcodec.features.Xcodec2FeatureExtractor`),
    which always pads 1..hop_length zeros at the end of every item (upstream quirk "always
    pad", so an item of exactly k hops still gets k + 1 frames) and stacks pairs of
    80-bin fbank frames into 160-dim semantic features, one per code frame.

    Batch invariance: called as Transformers does (``encode``/``decode`` without per-item
    lengths, ``batch_invariant=False``) the model reproduces the reference, padding effects
    included. ``encode(..., padding_mask=..., batch_invariant=True)``, ``decode(...,
    code_lengths=...)`` or ``decode(..., audio_codes_mask=...)``, and ``tokenize``/
    ``detokenize`` instead hide each item's padding from every layer (zeroed before
    zero-padded convs, last valid sample before the replicate-padded anti-aliasing filters,
    GroupNorm statistics and attention keys over valid frames, the ISTFT overlap-add and
    envelope over valid frames), so an item's codes and audio equal its alone-run. A batch
    whose items all fill it skips the masking.
    """

    # Tells xcodec.api it may batch items of different lengths (tokenize/detokenize are
    # batch-invariant). Pinned by tests/test_batch_invariance_xcodec2.py.
    batch_invariant: ClassVar[bool] = True

    def __init__(self, config: Xcodec2Config) -> None:
        super().__init__()
        self.config = config
        semantic_hidden = config.semantic_model_config.hidden_size
        self.semantic_encoder = Wav2Vec2BertEncoder(config.semantic_model_config)
        self.semantic_adapter = Xcodec2SemanticAdapter(semantic_hidden)
        self.acoustic_encoder = AcousticEncoder(
            config.encoder_hidden_size, config.downsampling_ratios, config.hidden_size
        )
        self.fc_encoder = nn.Linear(config.quantization_dim, config.quantization_dim)
        self.quantizer = ProjectedFSQ(config.quantization_dim, config.quantization_levels, bound_twice=True)
        self.acoustic_decoder = Xcodec2Decoder(config)
        # The checkpoint's preprocessor settings (set by from_pretrained), used when encode
        # computes the features itself; None means the extractor's defaults.
        self.preprocessor: Xcodec2FeatureExtractor | None = None

    # ------------------------------------------------------------------ codec interface
    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def frames_for(self, num_samples: int) -> int:
        """``ceil((num_samples + 1) / hop_length)``: the feature extractor always pads 1..hop
        samples (quirk "always pad"), so k whole hops give k + 1 frames."""
        return num_samples // self.hop_length + 1

    # ------------------------------------------------------------------ Transformers API
    def _solo_frames(self, padding_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(batch,) frames each item gets when encoded alone: ceil(padding_mask count / hop).

        An item alone is fed its first ``ceil(count / hop) * hop`` samples (the extractor pads
        to that: ``padded_length(n)`` with count = n + 1, the "always pad" sample included).
        """
        counts = mask_to_lengths(padding_mask).to(padding_mask.device)
        return torch.div(counts + self.hop_length - 1, self.hop_length, rounding_mode="floor").clamp(
            max=num_frames
        )

    def _pre_quantization(
        self,
        input_values: torch.Tensor,
        input_features: torch.Tensor,
        input_features_mask: torch.Tensor | None,
        frame_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused semantic + acoustic embedding, (batch, frames, quantization_dim).

        frame_lengths: (batch,) valid frames per item (batch-invariant path), or None.
        """
        # The semantic encoder is frozen in X-Codec2; no gradients flow into it. With its
        # key mask and causal convolution it already ignores padded frames.
        with torch.no_grad():
            semantic = self.semantic_encoder(input_features, input_features_mask)
        semantic = self.semantic_adapter(semantic.transpose(1, 2), frame_lengths)
        sample_lengths = None if frame_lengths is None else frame_lengths * self.hop_length
        acoustic = self.acoustic_encoder(input_values, sample_lengths)
        # Both streams run at one frame per hop; the feature extractor guarantees equal counts.
        fused = torch.cat([semantic, acoustic], dim=1)
        return self.fc_encoder(fused.transpose(1, 2))

    # Hooks where NeuCodec (models/neucodec.py) differs; X-Codec2's versions here.
    def _num_code_frames(self, num_samples: int) -> int:
        """Code frames of ``input_values`` holding ``num_samples`` (a multiple of the hop)."""
        return num_samples // self.hop_length

    def _codes_mask(self, padding_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``audio_codes_mask`` from the padding mask, in its layout and dtype (see :class:`Xcodec2EncoderOutput`)."""
        # The reference's mask: a frame counts only if it lies wholly inside the audio
        # (floor), one frame fewer than the item gets alone when its length is a multiple
        # of the hop ("always pad" quirk); ``code_lengths`` is the alone count.
        num_valid = padding_mask.sum(dim=-1, keepdim=True) // self.hop_length
        frame_index = torch.arange(num_frames, device=padding_mask.device)
        return (frame_index[None, :] < num_valid).to(padding_mask.dtype)

    def _feature_extractor(self) -> Xcodec2FeatureExtractor:
        """The extractor ``tokenize`` and feature-less ``encode`` build inputs with: the checkpoint's, else defaults."""
        if self.preprocessor is not None:
            return self.preprocessor
        from xcodec.features import Xcodec2FeatureExtractor

        return Xcodec2FeatureExtractor(sampling_rate=self.input_sample_rate, hop_length=self.hop_length)

    def _features_from_audio(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_features, input_features_mask) the feature extractor makes from this padded audio.

        Computed in float32 on the model's device (the Kaldi filterbank needs float32), then
        cast to the model's dtype; the mask stays int32 as the extractor returns it.
        """
        extractor = self._feature_extractor()
        features, features_mask = extractor.features_from_padded(
            input_values.to(self.device),
            None if padding_mask is None else padding_mask.to(self.device),
        )
        return features.to(self.dtype), features_mask

    part_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "encoder": ("semantic_encoder", "semantic_adapter", "acoustic_encoder", "fc_encoder", "quantizer"),
        "decoder": ("quantizer", "acoustic_decoder"),
    }

    def encode(
        self,
        input_values: torch.Tensor,
        input_features: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        output_latents: bool = False,
        *,
        batch_invariant: bool = False,
    ) -> Xcodec2EncoderOutput:
        """Audio to codes.

        input_values: (batch, 1, samples) waveform, samples a multiple of hop_length.
        input_features: (batch, frames, 160) stacked fbank features, frames = samples / hop_length;
            None: computed here from ``input_values`` (and ``padding_mask``) on the model's
            device, with the checkpoint's preprocessor settings, equal to the feature
            extractor's (``input_features_mask`` is then computed too). Without a padding
            mask every item is taken to fill the batch.
        padding_mask: (batch, samples) or (batch, 1, samples), 1 on real audio (the feature
            extractor also counts its one "always pad" sample). Builds ``audio_codes_mask``
            and ``code_lengths``; by default (the reference behaviour) the acoustic encoder
            still sees the zero padding, so a short item's last codes depend on the batch.
        input_features_mask: (batch, frames), 1 on real frames; masks the semantic encoder.
        batch_invariant: with a ``padding_mask``, make each item's codes (its first
            ``code_lengths`` frames) exactly those it gets encoded alone, whatever else is
            in the batch: every layer hides the padding from the item. The semantic mask is
            then derived from ``code_lengths`` (``input_features_mask`` is not needed).
            Without a padding mask every item is taken to fill the batch. An unpadded
            batch runs the plain path either way, at no extra cost.
        """
        self.require_part("encoder")
        if input_features is None:
            input_features, input_features_mask = self._features_from_audio(input_values, padding_mask)
        num_frames = self._num_code_frames(input_values.shape[-1])
        code_lengths = None if padding_mask is None else self._solo_frames(padding_mask, num_frames)
        frame_lengths = lengths_if_padded(code_lengths, num_frames) if batch_invariant else None
        if frame_lengths is not None:
            input_features_mask = lengths_to_mask(frame_lengths, input_features.shape[1])
        fused = self._pre_quantization(input_values, input_features, input_features_mask, frame_lengths)
        latents, indices = self.quantizer(fused)
        audio_codes = indices[:, None, :]
        audio_codes_mask = None
        if padding_mask is not None:
            audio_codes_mask = self._codes_mask(padding_mask, audio_codes.shape[-1])
        return Xcodec2EncoderOutput(
            audio_codes=audio_codes,
            audio_codes_mask=audio_codes_mask,
            latents=latents.transpose(1, 2) if output_latents else None,
            code_lengths=code_lengths,
        )

    def decode(
        self,
        audio_codes: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        *,
        audio_codes_mask: torch.Tensor | None = None,
        code_lengths: torch.Tensor | None = None,
    ) -> Xcodec2DecoderOutput:
        """Codes (batch, 1, frames) or latents (batch, quantization_dim, frames) to audio (batch, 1, frames * hop).

        Per-item lengths, as ``code_lengths`` (batch,) or ``audio_codes_mask`` (batch, frames)
        or (batch, 1, frames) with ones on a prefix, select the batch-invariant path: item i's
        first ``code_lengths[i] * hop`` samples equal the decode of its first
        ``code_lengths[i]`` codes alone (within float rounding), and the samples after are
        zero. Without them every frame is decoded as the reference does.
        """
        self.require_part("decoder")
        if audio_codes is not None:
            quantized = self.quantizer.from_indices(audio_codes[:, 0, :].long())
        elif latents is not None:
            quantized = latents.transpose(1, 2)
        else:
            raise ArgumentError("decode needs audio_codes or latents")
        if audio_codes_mask is not None and code_lengths is not None:
            raise ArgumentError("pass audio_codes_mask or code_lengths, not both")
        B, F, _ = quantized.shape
        if audio_codes_mask is not None:
            code_lengths = mask_to_lengths(audio_codes_mask)
        frame_lengths = None
        if code_lengths is not None:
            code_lengths = code_lengths.to(device=quantized.device, dtype=torch.long)
            # The value check reads back to Python: skipped inside a compiled graph.
            if code_lengths.shape != (B,) or (
                not torch.compiler.is_compiling() and bool(((code_lengths < 0) | (code_lengths > F)).any())
            ):
                raise ArgumentError(
                    f"code_lengths must be {B} values in [0, {F}], got {code_lengths.tolist()}"
                )
            frame_lengths = lengths_if_padded(code_lengths, F)
        audio_values = self.acoustic_decoder(quantized, frame_lengths)
        if frame_lengths is not None:
            audio_values = zero_padding(audio_values, frame_lengths * self.hop_length)
        return Xcodec2DecoderOutput(audio_values=audio_values)

    def forward(
        self,
        input_values: torch.Tensor,
        input_features: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        output_latents: bool = False,
        *,
        batch_invariant: bool = False,
    ) -> Xcodec2Output:
        """Encode then decode from the latents; audio cut to the input's length. Arguments as in :meth:`encode`.

        With ``batch_invariant`` (and a padding mask) the decode is batch-invariant too: item
        i's first ``code_lengths[i] * hop`` samples are its alone-run, the rest zero.
        """
        encoded = self.encode(
            input_values,
            input_features,
            padding_mask=padding_mask,
            input_features_mask=input_features_mask,
            output_latents=True,
            batch_invariant=batch_invariant,
        )
        assert encoded.latents is not None
        decoded = self.decode(
            latents=encoded.latents, code_lengths=encoded.code_lengths if batch_invariant else None
        )
        # The input's duration at the output rate (NeuCodec decodes at 24 kHz from 16 kHz).
        output_length = input_values.shape[-1] * self.sample_rate // self.input_sample_rate
        audio_values = decoded.audio_values[..., :output_length]
        return Xcodec2Output(
            audio_values=audio_values,
            audio_codes=encoded.audio_codes,
            latents=encoded.latents if output_latents else None,
            audio_codes_mask=encoded.audio_codes_mask,
            code_lengths=encoded.code_lengths,
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
        """Encode a padded batch of mono waveforms (batch, samples) at ``input_sample_rate``, batch-invariantly.

        Builds the features itself (X-Codec2 feature extractor, each item cut to its
        length first). Item i's codes are exactly those it gets alone, 0 after its
        ``code_lengths[i]`` frames; ``code_lengths`` is
        the number the reference returns for it alone, ``ceil((length + 1) / hop_length)``
        (the +1 is the extractor's "always pad" sample). ``bandwidth`` is ignored (one codebook).
        """
        B, T = waveforms.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        extractor = self._feature_extractor()
        # The extractor computes on the waveforms' device.
        items = [waveforms[index, : int(length)].detach().float() for index, length in enumerate(lengths)]
        features = extractor(items, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        device, dtype = self.device, self.dtype
        encoded = self.encode(
            features["input_values"].to(device=device, dtype=dtype),
            features["input_features"].to(device=device, dtype=dtype),
            padding_mask=features["padding_mask"].to(device),
            batch_invariant=True,
        )
        assert encoded.code_lengths is not None
        code_lengths = encoded.code_lengths.long()
        return TokenizeResult(
            audio_codes=zero_padding(encoded.audio_codes.long(), code_lengths), code_lengths=code_lengths
        )

    @torch.no_grad()
    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        """Decode codes (batch, 1, frames) to audio (batch, frames * hop) and per-item lengths.

        With ``code_lengths`` (batch,) the decode is batch-invariant (see :meth:`decode`):
        item i's audio is its first ``code_lengths[i] * hop`` samples, zeros after.
        """
        B, _, F = audio_codes.shape
        device = self.device
        audio = self.decode(
            audio_codes=audio_codes.to(device),
            code_lengths=None if code_lengths is None else code_lengths.to(device),
        ).audio_values[:, 0, :]
        if code_lengths is None:
            code_lengths = torch.full((B,), F, dtype=torch.long)
        lengths = code_lengths.to(torch.long).cpu() * self.hop_length
        return DetokenizeResult(audio=audio, lengths=lengths)
