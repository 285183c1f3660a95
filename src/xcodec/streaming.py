"""Streaming decode: audio while the codes are still arriving.

Rank 2 in tests/test_layering.py (beside ``models``): the streamers read the models'
parts (X-Codec's DAC decoder, X-Codec2's decoder body and ISTFT head), so they sit on the
models' rank; nothing here does I/O.

Two kinds of stream share one interface (:class:`DecoderStream`: ``push(codes) -> audio``,
``flush() -> audio``, ``batch_size`` streams advancing together):

- **Exact** (X-Codec, a purely convolutional DAC decoder): every new stretch of frames is
  decoded with ``reach`` frames of context on both sides (:meth:`DacDecoder.stream_reach`),
  which is all its samples depend on, so the streamed audio equals the offline decode
  (float summation order aside) for any chunking; a frame's audio comes out once ``reach``
  later frames have arrived (or at ``flush``).
- **Causal** (X-Codec2-Streaming, a checkpoint with ``decoder_causal``): the decoder looks
  only at past frames, so its modules keep a bounded state (conv histories, a sliding-window
  KV cache, the ISTFT tail) and a push decodes just the new frames, exactly
  (:class:`CausalXcodec2Stream`).
- **Windowed** (X-Codec2, NeuCodec: bidirectional attention and GroupNorm over time): each
  push runs the decoder body on the new frames' window (``left_context`` frames before,
  ``lookahead`` after), hands the new frames' features to the ISTFT head, which streams
  exactly (its overlap-add tail is state, :mod:`xcodec.layers.istft`), and optionally
  blends ``crossfade`` frames of features with the previous window's estimate. The cost
  of a push depends on the window, not on the stream's length. Only with context covering
  the whole input is it equal to the offline decode; the measured cost of the defaults is
  in bench/RESULTS.md (streaming section).

The concatenation of everything a stream returns has exactly the offline decode's length
(``frames * hop_length`` samples).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from xcodec.errors import ArgumentError, XcodecError
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.ops.streaming import StreamingState, init_states, resumed

__all__ = [
    "DEFAULT_CROSSFADE",
    "DEFAULT_LEFT_CONTEXT",
    "DEFAULT_LOOKAHEAD",
    "CausalXcodec2Stream",
    "DecoderStream",
    "ExactDacStream",
    "StreamError",
    "WindowedXcodec2Stream",
    "decoder_stream",
    "stream_decode",
]

# Defaults of the windowed stream (frames at 50 Hz), chosen from the quality grid in
# bench/RESULTS.md (streaming section).
DEFAULT_LEFT_CONTEXT = 50
DEFAULT_LOOKAHEAD = 4
DEFAULT_CROSSFADE = 2


class StreamError(XcodecError):
    """A stream was used wrongly (push after flush) or its decoder produced non-finite audio."""


class DecoderStream:
    """``batch_size`` streams of codes in, audio out as soon as it is final.

    push(codes): (num_codebooks, n) when batch_size is 1, or (batch_size, num_codebooks, n),
    n >= 1 -> the newly final audio, (m,) or (batch_size, m) float32 on the CPU (m may be 0).
    flush(): the rest; after it the stream takes no more codes. A push that fails (bad
    codes, non-finite decoder output) changes nothing: the audio already returned stays
    valid and the stream can go on.
    """

    def __init__(self, model: Any, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ArgumentError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.hop_length = int(model.hop_length)
        self.codebook_size = int(model.codebook_size)
        self.max_codebooks = int(model.num_codebooks)
        self.num_codebooks: int | None = None  # fixed by the first push
        self.frames_in = 0  # frames pushed so far
        self.frames_out = 0  # frames whose audio has been returned (or handed to the head)
        self.flushed = False
        self._first = 0  # index of self._codes' first frame in the stream
        self._codes: torch.Tensor | None = None  # (batch, num_codebooks, frames) kept as context

    # ---- input ---------------------------------------------------------------------------
    def _check(self, codes: Any) -> torch.Tensor:
        if self.flushed:
            raise StreamError("push after flush: this stream has ended; start a new one")
        codes = torch.as_tensor(codes)
        if codes.dim() == 2 and self.batch_size == 1:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3 or codes.shape[0] != self.batch_size:
            want = "(num_codebooks, frames) or " if self.batch_size == 1 else ""
            raise ArgumentError(
                f"push: codes must be {want}({self.batch_size}, num_codebooks, frames), got {tuple(codes.shape)}"
            )
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ArgumentError(f"push: codes must be integers, got {codes.dtype}")
        _, num_codebooks, frames = codes.shape
        if frames == 0:
            raise ArgumentError("push: empty chunk (0 frames); push at least one frame")
        expected = self.num_codebooks
        if expected is not None and num_codebooks != expected:
            raise ArgumentError(f"push: {num_codebooks} codebooks, but this stream started with {expected}")
        if not 1 <= num_codebooks <= self.max_codebooks:
            raise ArgumentError(
                f"push: {num_codebooks} codebooks; this codec takes 1 to {self.max_codebooks}"
            )
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ArgumentError(
                f"push: code values must lie in [0, {self.codebook_size}), found {low}..{high}"
            )
        return codes.long()

    def push(self, codes: Any) -> torch.Tensor:
        checked = self._check(codes)
        with torch.inference_mode():
            kept = checked if self._codes is None else torch.cat([self._codes, checked], dim=2)
            audio = self._advance(kept, self.frames_in + checked.shape[2], final=False)
        self.num_codebooks = checked.shape[1]
        return self._shaped(audio)

    def flush(self) -> torch.Tensor:
        if self.flushed:
            raise StreamError("flush after flush: this stream has ended")
        with torch.inference_mode():
            if self._codes is None:
                audio = torch.zeros(self.batch_size, 0)
            else:
                audio = self._advance(self._codes, self.frames_in, final=True)
        self.flushed = True
        return self._shaped(audio)

    def _shaped(self, audio: torch.Tensor) -> torch.Tensor:
        audio = audio.float().cpu()
        return audio[0] if self.batch_size == 1 else audio

    def _advance(self, codes: torch.Tensor, frames_in: int, *, final: bool) -> torch.Tensor:
        """Decode what ``codes`` (the kept context plus the new frames) make final; commit state on success."""
        raise NotImplementedError

    def _commit(self, codes: torch.Tensor, frames_in: int, frames_out: int, keep_from: int) -> None:
        """Record progress and keep only the codes from stream frame ``keep_from`` on (bounded context)."""
        keep_from = max(self._first, min(keep_from, frames_in))
        self._codes = codes[:, :, keep_from - self._first :]
        self._first = keep_from
        self.frames_in, self.frames_out = frames_in, frames_out

    def _window(self, codes: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Stream frames [start, stop) of the kept ``codes``."""
        return codes[:, :, start - self._first : stop - self._first]

    def _finite(self, values: torch.Tensor, start: int, stop: int) -> None:
        if not bool(torch.isfinite(values).all()):
            raise StreamError(
                f"the decoder produced non-finite values (NaN/inf latents) for frames {start}..{stop - 1}; "
                "nothing of them was returned and the stream's earlier audio stays valid"
            )


class ExactDacStream(DecoderStream):
    """X-Codec: exact streaming of the convolutional DAC decoder (see the module docstring)."""

    def __init__(self, model: XcodecModel, batch_size: int = 1) -> None:
        super().__init__(model, batch_size)
        self.reach = model.acoustic_decoder.stream_reach()

    @property
    def latency_frames(self) -> int:
        """Frames that must arrive after a frame before its audio comes out."""
        return self.reach

    def _advance(self, codes: torch.Tensor, frames_in: int, *, final: bool) -> torch.Tensor:
        start = self.frames_out
        stop = frames_in if final else max(start, frames_in - self.reach)
        if stop == start:
            self._commit(codes, frames_in, start, start - self.reach)
            return torch.zeros(self.batch_size, 0)
        low, high = max(0, start - self.reach), min(frames_in, stop + self.reach)
        audio = self.model.decode(self._window(codes, low, high)).audio_values[:, 0]
        self._finite(audio, start, stop)
        hop = self.hop_length
        audio = audio[:, (start - low) * hop : (stop - low) * hop]
        self._commit(codes, frames_in, stop, stop - self.reach)
        return audio


class WindowedXcodec2Stream(DecoderStream):
    """X-Codec2 / NeuCodec: windowed decoder body, exact streaming ISTFT head (see the module docstring)."""

    def __init__(
        self,
        model: Xcodec2Model,
        batch_size: int = 1,
        *,
        left_context: int = DEFAULT_LEFT_CONTEXT,
        lookahead: int = DEFAULT_LOOKAHEAD,
        crossfade: int | None = None,
    ) -> None:
        super().__init__(model, batch_size)
        if crossfade is None:  # the default, within the context there is
            crossfade = min(DEFAULT_CROSSFADE, left_context)
        for name, value in (
            ("left_context", left_context),
            ("lookahead", lookahead),
            ("crossfade", crossfade),
        ):
            if int(value) != value or value < 0:
                raise ArgumentError(f"{name} must be a whole number of frames >= 0, got {value!r}")
        if crossfade > left_context:
            raise ArgumentError(f"crossfade ({crossfade}) cannot exceed left_context ({left_context})")
        self.left_context, self.lookahead, self.crossfade = int(left_context), int(lookahead), int(crossfade)
        model.require_part("decoder")
        self.decoder = model.acoustic_decoder
        self._states: dict[Any, StreamingState] = init_states(self.decoder.head, batch_size)
        # Features of the frames [frames_out, frames_out + n) from the last window, awaiting the blend.
        self._pending: torch.Tensor | None = None

    @property
    def latency_frames(self) -> int:
        return self.lookahead + self.crossfade

    def _advance(self, codes: torch.Tensor, frames_in: int, *, final: bool) -> torch.Tensor:
        sent = self.frames_out
        pending = 0 if self._pending is None else self._pending.shape[1]
        start = sent + pending  # first frame never computed before
        stop = frames_in if final else max(start, frames_in - self.lookahead)
        if stop == start and not final:
            self._commit(codes, frames_in, sent, sent - self.left_context)
            return torch.zeros(self.batch_size, 0)
        parts: list[torch.Tensor] = []
        if stop > start or pending:
            low = max(0, sent - self.left_context)
            high = min(frames_in, stop + self.lookahead)
            latents = self.model.quantizer.from_indices(self._window(codes, low, high)[:, 0, :])
            features = self.decoder.features(latents)[:, sent - low : stop - low]
            self._finite(features, sent, stop)
            if pending and self._pending is not None:
                # Linear ramp from the previous window's estimate to this one's.
                ramp = torch.arange(1, pending + 1, dtype=features.dtype, device=features.device) / (
                    pending + 1
                )
                blended = self._pending + ramp[None, :, None] * (features[:, :pending] - self._pending)
                features = torch.cat([blended, features[:, pending:]], dim=1)
            hold = 0 if final else min(self.crossfade, features.shape[1])
            ready, held = features[:, : features.shape[1] - hold], features[:, features.shape[1] - hold :]
            with resumed(self._states):
                if ready.shape[1]:
                    parts.append(self.decoder.head(ready)[:, 0])
                if final:
                    parts.append(self.decoder.head.flush_stream()[:, 0])
            self._pending = held if hold else None
            sent += ready.shape[1]
        elif final:
            with resumed(self._states):
                parts.append(self.decoder.head.flush_stream()[:, 0])
        self._commit(codes, frames_in, sent, sent - self.left_context)
        return torch.cat(parts, dim=1) if parts else torch.zeros(self.batch_size, 0)


class CausalXcodec2Stream(DecoderStream):
    """X-Codec2-Streaming (``decoder_causal``): the causal decoder streams exactly with its own state.

    Every stateful module of the decoder (the left-padded convs' last input frames, each
    attention layer's keys and values of the last ``decoder_attention_window - 1`` frames,
    the ISTFT head's overlap-add tail; :mod:`xcodec.layers.causal`) keeps a state for
    ``batch_size`` streams, so a push of n frames runs the decoder on those n frames only:
    O(n) whatever the stream's length, no codes kept. Each frame's audio comes out with the
    push that brings it, less the ISTFT head's tail (its last ``n_fft - hop - padding``
    samples, 480 at 16 kHz, follow with the next push or at ``flush``). The output equals the
    causal model's offline decode (float summation order aside).
    """

    def __init__(self, model: Xcodec2Model, batch_size: int = 1) -> None:
        super().__init__(model, batch_size)
        model.require_part("decoder")
        self.decoder = model.acoustic_decoder
        self._states: dict[Any, StreamingState] = init_states(self.decoder, batch_size)

    @property
    def latency_frames(self) -> int:
        return 0

    def _advance(self, codes: torch.Tensor, frames_in: int, *, final: bool) -> torch.Tensor:
        new = codes[:, :, self.frames_out - self._first :].to(self.model.device)
        parts: list[torch.Tensor] = []
        # A failed push must leave the stream as it was: keep the states' fields to put back.
        saved = {module: dict(vars(state)) for module, state in self._states.items()}
        try:
            with resumed(self._states):
                if new.shape[2]:
                    latents = self.model.quantizer.from_indices(new[:, 0, :])
                    features = self.decoder.features(latents)
                    self._finite(features, self.frames_out, frames_in)
                    parts.append(self.decoder.head(features)[:, 0])
                if final:
                    parts.append(self.decoder.head.flush_stream()[:, 0])
        except BaseException:
            for module, fields in saved.items():
                vars(self._states[module]).update(fields)
            raise
        # No codes are kept: the modules' states hold all the context there is.
        self._commit(codes, frames_in, frames_in, frames_in)
        return torch.cat(parts, dim=1) if parts else torch.zeros(self.batch_size, 0)


def decoder_stream(model: Any, batch_size: int = 1, **options: Any) -> DecoderStream:
    """A :class:`DecoderStream` for ``model`` (X-Codec and causal X-Codec2: exact; X-Codec2/NeuCodec: windowed).

    options (windowed only): ``left_context``, ``lookahead``, ``crossfade`` in frames.
    """
    if isinstance(model, XcodecModel) or (isinstance(model, Xcodec2Model) and model.config.decoder_causal):
        if options:
            raise ArgumentError(
                f"{type(model).__name__} streams exactly (causal decoder) and takes no options, "
                f"got {', '.join(sorted(options))}"
            )
        if isinstance(model, XcodecModel):
            return ExactDacStream(model, batch_size)
        return CausalXcodec2Stream(model, batch_size)
    if isinstance(model, Xcodec2Model):
        unknown = set(options) - {"left_context", "lookahead", "crossfade"}
        if unknown:
            raise ArgumentError(
                f"unknown streaming option(s) {', '.join(sorted(unknown))}; "
                "the options are left_context, lookahead, crossfade"
            )
        return WindowedXcodec2Stream(model, batch_size, **options)
    raise ArgumentError(f"streaming decode is not available for {type(model).__name__}")


def stream_decode(model: Any, chunks: Iterable[Any], **options: Any) -> Iterator[torch.Tensor]:
    """Yield 1-D audio as soon as it is final for code chunks (num_codebooks, n) arriving in order.

    Empty pieces are not yielded; everything yielded joins to the offline decode's length.
    """
    stream = decoder_stream(model, 1, **options)
    for chunk in chunks:
        audio = stream.push(chunk)
        if audio.numel():
            yield audio
    audio = stream.flush()
    if audio.numel():
        yield audio
