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
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.configs.ssl import HubertConfig, WavLMConfig
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import ArgumentError, AudioError
from xcodec.layers.rvq import ResidualVectorQuantizer
from xcodec.ops.masking import lengths_if_padded, mask_to_lengths, zero_padding
from xcodec.semantic.hubert import HubertEncoder
from xcodec.semantic.wavlm import WavLMEncoder
from xcodec.stages.dac import DacDecoder, DacEncoder
from xcodec.stages.semantic_adapter import SemanticDecoder, SemanticEncoder

__all__ = ["XcodecDecoderOutput", "XcodecEncoderOutput", "XcodecModel", "XcodecOutput"]


@dataclasses.dataclass
class XcodecEncoderOutput:
    """audio_codes: (batch, num_quantizers, frames) int64.

    code_lengths: (batch,) int64 frames each item gets encoded alone, when a padding mask
    was given (the batch-invariant path); None otherwise.
    """

    audio_codes: torch.Tensor
    code_lengths: torch.Tensor | None = None


@dataclasses.dataclass
class XcodecDecoderOutput:
    """audio_values: (batch, 1, frames * hop_length) float."""

    audio_values: torch.Tensor


@dataclasses.dataclass
class XcodecOutput:
    """audio_codes: (batch, num_quantizers, frames); audio_values: (batch, 1, samples), cut to the input length.

    code_lengths: (batch,) valid frames per item with a padding mask, else None.
    """

    audio_codes: torch.Tensor
    audio_values: torch.Tensor
    code_lengths: torch.Tensor | None = None


def build_semantic_model(config: HubertConfig | WavLMConfig) -> HubertEncoder | WavLMEncoder:
    """The frozen semantic teacher the config describes."""
    if isinstance(config, WavLMConfig):
        return WavLMEncoder(config)
    return HubertEncoder(config)


class XcodecModel(CodecModel):
    """X-Codec (v1) with the module layout of Transformers' ``XcodecModel``.

    Batch invariance: called as Transformers does (no ``padding_mask``, no
    ``code_lengths``) the model reproduces the reference, padding effects included.
    ``encode``/``forward`` with a ``padding_mask``, ``decode`` with ``code_lengths`` or
    ``audio_codes_mask``, and ``tokenize``/``detokenize`` instead hide each item's padding
    from every layer that looks across time (the teacher's conv GroupNorm statistics,
    positional conv and attention keys; the zero-padded convs of ``encoder_semantic`` and
    of the DAC encoder and decoder, transposed convs included; the per-item choice of
    the acoustic encoder's input padding), so an item's codes are exactly those it gets
    alone and its audio equals its alone-run within float rounding. A batch whose items
    all fill it skips the masking.
    """

    # Tells xcodec.api it may batch items of different lengths (tokenize/detokenize are
    # batch-invariant). Pinned by tests/test_batch_invariance_xcodec.py.
    batch_invariant: ClassVar[bool] = True
    part_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "encoder": ("semantic_model", "encoder_semantic", "acoustic_encoder", "fc", "quantizer"),
        "decoder": ("quantizer", "fc2", "acoustic_decoder"),
    }

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

    @property
    def bandwidths(self) -> tuple[float, ...]:
        return tuple(float(b) for b in self.config.target_bandwidths)

    def frames_for(self, num_samples: int) -> int:
        """The semantic teacher's frame count (see :meth:`code_lengths_for`); without the encoder
        (``parts="decoder"``) its upper bound ``ceil(num_samples / hop_length)``."""
        if self.loaded_parts == "decoder":
            return super().frames_for(num_samples)
        return int(self.code_lengths_for(torch.tensor([num_samples]))[0])

    # ---- encode / decode ----------------------------------------------------------

    def code_lengths_for(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) samples -> (batch,) frames an item of that many samples gets encoded alone.

        The semantic branch sets the count: the teacher's frames of the input padded by
        ``hop_length // 2`` on both sides (``floor((samples - 80) / 320) + 1`` for the
        published models), through ``encoder_semantic``. 0 means too short to encode.
        """
        self.require_part("encoder")
        pad = self.hop_length // 2
        teacher_frames = self.semantic_model.feature_extractor.output_lengths(sample_lengths + 2 * pad)
        return self.encoder_semantic.output_lengths(teacher_frames).clamp(min=0)

    def encode(
        self,
        input_values: torch.Tensor,
        bandwidth: float | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> XcodecEncoderOutput:
        """Waveform (batch, 1, samples) -> codes (batch, num_quantizers, frames) int64.

        ``bandwidth`` (kbps) must be one of ``config.target_bandwidths`` and picks the
        number of codebooks (``floor(bandwidth / 0.5)`` for the published models); None
        uses the highest. Frames: ``floor((samples - 80) / 320) + 1`` for the published
        models (the semantic teacher's count on the padded input).

        padding_mask: (batch, samples) or (batch, 1, samples), 1 on each item's valid
            samples (a prefix), or None. Without it every sample is audio and the model
            computes exactly what the reference does (which has no padding mask: padding
            changes the codes of a shorter item). With it the batch-invariant path runs:
            item i's first ``code_lengths[i]`` frames are exactly the codes it gets encoded
            alone, its later frames are 0, and ``code_lengths`` is returned. A mask with
            no padded sample costs nothing extra.
        """
        self.require_part("encoder")
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise AudioError(
                f"X-Codec encodes mono audio shaped (batch, 1, samples), got {tuple(input_values.shape)}"
            )
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        sample_lengths = None if padding_mask is None else self._mask_lengths(padding_mask, input_values)
        return self._encode(input_values, num_quantizers, sample_lengths)

    def _mask_lengths(self, padding_mask: torch.Tensor, input_values: torch.Tensor) -> torch.Tensor:
        batch, _, num_samples = input_values.shape
        if padding_mask.shape not in ((batch, num_samples), (batch, 1, num_samples)):
            raise ArgumentError(
                f"padding_mask must be ({batch}, {num_samples}) or ({batch}, 1, {num_samples}) "
                f"like the input, got {tuple(padding_mask.shape)}"
            )
        return mask_to_lengths(padding_mask)

    def _encode(
        self, input_values: torch.Tensor, num_quantizers: int, sample_lengths: torch.Tensor | None
    ) -> XcodecEncoderOutput:
        """Codes of (batch, 1, samples); ``sample_lengths`` (batch,) valid samples or None.

        One path for both cases: with no padding in the batch every length step below is
        skipped (``None``) and the computation is the reference's exactly; with padding,
        each step hides it as an item alone would meet it: its samples past the end are
        zeroed, which is also the zero padding X-Codec appends for the teacher; the
        teacher, ``encoder_semantic`` and the DAC encoder mask by lengths (see their
        ``forward``); the fc and the RVQ work frame by frame.
        """
        batch, _, num_samples = input_values.shape
        lengths = lengths_if_padded(sample_lengths, num_samples)
        if lengths is not None:
            lengths = lengths.to(input_values.device)
        full = torch.full((batch,), num_samples, dtype=torch.long, device=input_values.device)
        item_lengths = full if lengths is None else lengths
        pad = self.hop_length // 2
        code_lengths = self.code_lengths_for(item_lengths)
        # Value checks and value-dependent branches read tensors back to Python: a compiled
        # graph skips the checks and, on a padded batch, takes the general per-item path.
        compiling = torch.compiler.is_compiling()
        too_short = [] if compiling else (code_lengths < 1).nonzero().flatten().tolist()
        if too_short:
            described = ", ".join(f"item {i} ({int(item_lengths[i])} samples)" for i in too_short)
            raise AudioError(f"too short for X-Codec, no frame: {described}")
        waveform = zero_padding(input_values[:, 0, :], lengths)  # (batch, samples)

        # The teacher sees the input padded by hop/2 zeros both sides: in a padded batch the
        # batch's own zeros after each item's end (just zeroed) are those zeros, so only
        # the length grows. The teacher is frozen; the reference never lets gradients reach it.
        semantic_lengths = None if lengths is None else lengths + 2 * pad
        with torch.no_grad():
            semantic_features = self.semantic_model.mean_hidden_states(
                F.pad(waveform, (pad, pad)), lengths=semantic_lengths
            )
        teacher_frames = (
            None
            if semantic_lengths is None
            else self.semantic_model.feature_extractor.output_lengths(semantic_lengths)
        )
        semantic = self.encoder_semantic(semantic_features.transpose(1, 2), teacher_frames)

        # The acoustic branch sees the input unpadded, unless its frame count would then
        # disagree with the semantic one: then the reference re-runs it on the hop/2-padded
        # input. In a padded batch that choice is per item, by shifting those items right
        # by hop/2 (their left padding).
        if lengths is None:
            frames = semantic.shape[2]
            encoder = self.acoustic_encoder
            if encoder.output_length(num_samples) == frames:
                acoustic = encoder(waveform[:, None, :])
            elif encoder.output_length(num_samples + 2 * pad) == frames:
                acoustic = encoder(F.pad(waveform[:, None, :], (pad, pad)))
            else:
                raise AudioError(
                    f"cannot align the acoustic and semantic frames for {num_samples} samples "
                    f"({encoder.output_length(num_samples)} vs {frames}); the audio is probably too short"
                )
            audio_codes = self._quantize(acoustic, semantic, num_quantizers)
            returned_lengths = None if sample_lengths is None else code_lengths
            return XcodecEncoderOutput(audio_codes, returned_lengths)
        assert semantic_lengths is not None
        shifted = self.acoustic_encoder.output_lengths(lengths) != code_lengths
        unaligned = shifted & (self.acoustic_encoder.output_lengths(semantic_lengths) != code_lengths)
        if not compiling and bool(unaligned.any()):
            items = unaligned.nonzero().flatten().tolist()
            raise AudioError(f"cannot align the acoustic and semantic frames of items {items}")
        acoustic_input = waveform[:, None, :]
        acoustic_lengths = lengths
        if compiling or bool(shifted.any()):
            acoustic_input = torch.where(
                shifted[:, None, None],
                F.pad(acoustic_input, (pad, pad)),
                F.pad(acoustic_input, (0, 2 * pad)),
            )
            acoustic_lengths = torch.where(shifted, semantic_lengths, lengths)
        acoustic = self.acoustic_encoder(acoustic_input, acoustic_lengths)
        # Past every item's frames the two branches may differ in length; fit the acoustic one.
        frames = semantic.shape[2]
        if acoustic.shape[2] >= frames:
            acoustic = acoustic[:, :, :frames]
        else:
            acoustic = F.pad(acoustic, (0, frames - acoustic.shape[2]))
        audio_codes = zero_padding(self._quantize(acoustic, semantic, num_quantizers), code_lengths)
        return XcodecEncoderOutput(audio_codes, code_lengths)

    def _quantize(self, acoustic: torch.Tensor, semantic: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        """(batch, acoustic_hidden, frames) and (batch, semantic_hidden, frames) -> codes."""
        fused = torch.cat([acoustic, semantic], dim=1)
        embeddings = self.fc(fused.transpose(1, 2)).transpose(1, 2)
        return self.quantizer.encode(embeddings, num_quantizers)

    def decode(
        self,
        audio_codes: torch.Tensor,
        *,
        code_lengths: torch.Tensor | None = None,
        audio_codes_mask: torch.Tensor | None = None,
    ) -> XcodecDecoderOutput:
        """Codes (batch, num_codebooks, frames), any num_codebooks up to the maximum ->
        waveform (batch, 1, frames * hop_length).

        Per-item lengths, as ``code_lengths`` (batch,) or ``audio_codes_mask`` (batch,
        frames) or (batch, 1, frames) with ones on a prefix, select the batch-invariant
        path: item i's first ``code_lengths[i] * hop_length`` samples equal the decode of
        its first ``code_lengths[i]`` frames alone (within float rounding), the samples
        after are 0, and its codes past ``code_lengths[i]`` may hold anything (they are
        not read). Without them every frame is decoded, as the reference does.
        """
        self.require_part("decoder")
        if audio_codes.dim() != 3:
            raise ArgumentError(
                f"audio_codes must be (batch, num_codebooks, frames), got {tuple(audio_codes.shape)}"
            )
        batch, num_codebooks, num_frames = audio_codes.shape
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise ArgumentError(
                f"audio_codes carry {num_codebooks} codebooks; this model decodes 1..{self.num_codebooks}"
            )
        if audio_codes_mask is not None and code_lengths is not None:
            raise ArgumentError("pass audio_codes_mask or code_lengths, not both")
        if audio_codes_mask is not None:
            if audio_codes_mask.shape not in ((batch, num_frames), (batch, 1, num_frames)):
                raise ArgumentError(
                    f"audio_codes_mask must be ({batch}, {num_frames}) or ({batch}, 1, {num_frames}), "
                    f"got {tuple(audio_codes_mask.shape)}"
                )
            code_lengths = mask_to_lengths(audio_codes_mask)
        audio_codes = audio_codes.to(self.device)
        frame_lengths = None
        if code_lengths is not None:
            code_lengths = torch.as_tensor(code_lengths).to(self.device, torch.long)
            # Value checks read tensors back to Python: skipped inside a compiled graph.
            if code_lengths.shape != (batch,) or (
                not torch.compiler.is_compiling()
                and bool(((code_lengths < 0) | (code_lengths > num_frames)).any())
            ):
                raise ArgumentError(
                    f"code_lengths must be {batch} values in 0..{num_frames}, got {code_lengths.tolist()}"
                )
            frame_lengths = lengths_if_padded(code_lengths, num_frames)
            # Codes past an item's end are never read: any filler value is fine there.
            audio_codes = zero_padding(audio_codes, frame_lengths)
        if (
            audio_codes.numel()
            and not torch.compiler.is_compiling()
            and (int(audio_codes.min()) < 0 or int(audio_codes.max()) >= self.codebook_size)
        ):
            raise ArgumentError(
                f"audio_codes must lie in 0..{self.codebook_size - 1}, "
                f"got {int(audio_codes.min())}..{int(audio_codes.max())}"
            )
        quantized = self.quantizer.decode(audio_codes)
        # fc2 is per frame; the decoder masks by frame lengths.
        acoustic_latent = self.fc2(quantized.transpose(1, 2)).transpose(1, 2)
        audio_values = self.acoustic_decoder(acoustic_latent, frame_lengths)
        if frame_lengths is not None:
            audio_values = zero_padding(audio_values, self.acoustic_decoder.output_lengths(frame_lengths))
        return XcodecDecoderOutput(audio_values)

    def forward(
        self,
        input_values: torch.Tensor,
        audio_codes: torch.Tensor | None = None,
        bandwidth: float | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> XcodecOutput:
        """Encode (unless ``audio_codes`` are given) and decode, cut to the input length.

        input_values: (batch, 1, samples); audio_codes: (batch, num_codebooks, frames).
        padding_mask: as in :meth:`encode`; with it encode and decode are both
        batch-invariant: item i's audio is its alone-run's for its first
        ``min(length_i, code_lengths[i] * hop_length)`` samples and 0 after, and
        ``code_lengths`` is returned. Given ``audio_codes`` too, item i's are taken to be
        the ``code_lengths_for(length_i)`` frames its audio would give.
        """
        if padding_mask is None:
            if audio_codes is None:
                audio_codes = self.encode(input_values, bandwidth).audio_codes
            audio_values = self.decode(audio_codes).audio_values[..., : input_values.shape[-1]]
            return XcodecOutput(audio_codes=audio_codes, audio_values=audio_values)
        sample_lengths = self._mask_lengths(padding_mask, input_values)
        if audio_codes is None:
            encoded = self.encode(input_values, bandwidth, padding_mask)
            audio_codes, code_lengths = encoded.audio_codes, encoded.code_lengths
        else:
            code_lengths = self.code_lengths_for(sample_lengths).clamp(max=audio_codes.shape[-1])
        audio_values = self.decode(audio_codes, code_lengths=code_lengths).audio_values
        audio_values = audio_values[..., : input_values.shape[-1]]
        audio_values = zero_padding(audio_values, lengths_if_padded(sample_lengths, input_values.shape[-1]))
        return XcodecOutput(audio_codes=audio_codes, audio_values=audio_values, code_lengths=code_lengths)

    # ---- padded batches -------------------------------------------------------------

    @torch.no_grad()
    def tokenize(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        bandwidth: float | None = None,
    ) -> TokenizeResult:
        """Codes of a padded batch in one model call, each item's equal to encoding it alone.

        waveforms: (batch, samples), padded past ``lengths`` (batch,) with anything (the
        padding is masked, see :meth:`encode`). Item i gets ``code_lengths_for(length_i)``
        frames; its codes after them are 0.
        """
        if waveforms.dim() != 2:
            raise AudioError(f"waveforms must be (batch, samples), got {tuple(waveforms.shape)}")
        batch, num_samples = waveforms.shape
        if batch == 0:
            raise AudioError("tokenize got an empty batch")
        lengths = _full_lengths(lengths, batch, num_samples, "lengths")
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        encoded = self._encode(
            waveforms[:, None, :].to(self.device, self.dtype), num_quantizers, lengths.to(self.device)
        )
        assert encoded.code_lengths is not None
        return TokenizeResult(audio_codes=encoded.audio_codes, code_lengths=encoded.code_lengths.cpu())

    @torch.no_grad()
    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        """Audio (batch, samples) of padded codes (batch, num_codebooks, frames) in one model call.

        Batch-invariant (see :meth:`decode`): item i's audio is its first
        ``code_lengths[i] * hop_length`` samples, each within float rounding of its decode
        alone, zeros after.
        """
        if audio_codes.dim() != 3:
            raise ArgumentError(
                f"audio_codes must be (batch, num_codebooks, frames), got {tuple(audio_codes.shape)}"
            )
        batch, _, frames = audio_codes.shape
        if batch == 0:
            raise ArgumentError("detokenize got an empty batch")
        code_lengths = _full_lengths(code_lengths, batch, frames, "code_lengths")
        audio = self.decode(audio_codes, code_lengths=code_lengths).audio_values[:, 0]
        lengths = self.acoustic_decoder.output_lengths(code_lengths)
        return DetokenizeResult(audio=audio, lengths=lengths)


def _full_lengths(lengths: torch.Tensor | None, batch: int, full: int, name: str) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), full, dtype=torch.long)
    lengths = torch.as_tensor(lengths).to("cpu", torch.long)
    if lengths.shape != (batch,):
        raise ArgumentError(f"{name} must be shaped ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > full):
        raise ArgumentError(f"{name} must lie in 1..{full}, got {lengths.tolist()}")
    return lengths
