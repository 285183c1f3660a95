"""The Vocos ISTFT head: linear -> (log-magnitude, phase) -> "same"-padded inverse STFT.

With per-item ``lengths``, padded frames are left out of the overlap-add and of the
window envelope, so every item's valid output equals its alone-run.

Streaming (inside ``with streaming(head, B)``, :mod:`xcodec.ops.streaming`): each call
takes the next frames and returns only the samples no later frame can change; the
overlap-add tail (``n_fft - hop`` samples of audio and window envelope) waits in
:class:`IstftStreamState`, and :meth:`ISTFTHead.flush_stream` returns it at the end. The
concatenation equals the offline output (float summation order aside).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.ops.masking import zero_padding
from xcodec.ops.streaming import StreamingModule, StreamingState

__all__ = ["ISTFTHead", "IstftStreamState"]


@dataclass
class IstftStreamState(StreamingState):
    """The overlap-add tail of a stream: frames seen, and the unfinished samples after them.

    audio_tail: (batch, n_fft - hop) summed windowed frames from sample ``frames * hop`` on
    (before the "same" crop); envelope_tail: (n_fft - hop,) their summed squared windows.
    """

    frames: int = 0
    audio_tail: torch.Tensor | None = None
    envelope_tail: torch.Tensor | None = None
    flushed: bool = False


class ISTFTHead(StreamingModule[IstftStreamState]):
    """Linear -> (log-magnitude, phase) -> inverse STFT with "same" padding (Vocos).

    (batch, frames, hidden) -> (batch, 1, frames * hop_length). torch.istft has no
    "same" mode, so the overlap-add is written out: inverse real FFT per frame, Hann
    window, overlap-add with ``fold``, crop ``(n_fft - hop) / 2`` each side, divide by
    the summed squared window.

    With ``lengths``, an item's frames past its length are dropped from both the overlap-add
    and the window envelope, so its first ``lengths * hop_length`` samples equal its
    alone-run (whose envelope tapers at its own end, not at the batch's).
    """

    def __init__(self, hidden_size: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = (n_fft - hop_length) // 2
        self.linear = nn.Linear(hidden_size, n_fft + 2)
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (batch, n_fft, num_frames) -> (batch, samples) with the "same" crop applied."""
        _, _, num_frames = frames.shape
        output_size = (num_frames - 1) * self.hop_length + self.n_fft
        summed = F.fold(
            frames, output_size=(1, output_size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )
        return summed[:, 0, 0, self.padding : output_size - self.padding]

    def _init_streaming_state(self, batch_size: int) -> IstftStreamState:
        return IstftStreamState(batch_size)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, frames, hidden) -> windowless inverse-FFT frames (batch, n_fft, frames), float32."""
        log_magnitude, phase = self.linear(x).chunk(2, dim=-1)
        # Complex math needs float32 (no ComplexHalf FFT); the clamp (at 100) is the original's.
        magnitude = log_magnitude.float().exp().clamp(max=1e2)
        spectrum = torch.polar(magnitude, phase.float())
        return torch.fft.irfft(spectrum, self.n_fft, dim=-1, norm="backward").transpose(1, 2)

    def _stream_step(self, x: torch.Tensor, state: IstftStreamState) -> torch.Tensor:
        """The next frames (batch, n, hidden) -> the samples they make final (batch, 1, m)."""
        if state.flushed:
            raise ValueError("ISTFT stream already flushed")
        hop, tail = self.hop_length, self.n_fft - self.hop_length
        window = self.window.float()
        frames = self._frames(x) * window[None, :, None]
        num_frames = frames.shape[-1]
        size = (num_frames - 1) * hop + self.n_fft
        fold = (1, size), (1, self.n_fft), (1, hop)
        audio = F.fold(frames, output_size=fold[0], kernel_size=fold[1], stride=fold[2])[:, 0, 0]
        squared = window.square()[None, :, None].expand(1, -1, num_frames)
        envelope = F.fold(squared, output_size=fold[0], kernel_size=fold[1], stride=fold[2])[0, 0, 0]
        if state.audio_tail is not None and state.envelope_tail is not None:
            audio = torch.cat([audio[:, :tail] + state.audio_tail, audio[:, tail:]], dim=1)
            envelope = torch.cat([envelope[:tail] + state.envelope_tail, envelope[tail:]])
        start = state.frames * hop  # uncropped position of audio[:, 0]
        final = num_frames * hop
        state.audio_tail, state.envelope_tail = audio[:, final:], envelope[final:]
        state.frames += num_frames
        return self._cropped(audio[:, :final], envelope[:final], start)

    def _cropped(self, audio: torch.Tensor, envelope: torch.Tensor, start: int) -> torch.Tensor:
        """Final uncropped samples from position ``start`` -> (batch, 1, m) with the "same" crop's head removed."""
        skip = max(0, self.padding - start)
        audio, envelope = audio[:, skip:], envelope[skip:]
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)

    def flush_stream(self) -> torch.Tensor:
        """End the stream: the samples still in the overlap-add tail (batch, 1, m), less the "same" crop."""
        state = self.streaming_state
        if state is None:
            raise ValueError("flush_stream outside a streaming block")
        if state.flushed:
            raise ValueError("ISTFT stream already flushed")
        state.flushed = True
        if state.audio_tail is None or state.envelope_tail is None:
            return torch.zeros(state.batch_size, 1, 0, device=self.window.device)
        keep = state.audio_tail.shape[1] - self.padding
        start = state.frames * self.hop_length
        return self._cropped(state.audio_tail[:, :keep], state.envelope_tail[:keep], start)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, frames, hidden); lengths: (batch,) valid frames or None -> (batch, 1, frames * hop).

        Streaming (see the module docstring): x holds the next frames of every stream and
        the result the samples they made final; ``lengths`` must be None.
        """
        state = self.streaming_state
        if state is not None:
            if lengths is not None:
                raise ValueError("a streaming ISTFT head takes no lengths")
            return self._stream_step(x, state)
        frames = self._frames(x)
        window = self.window.float()
        num_frames = frames.shape[-1]
        audio = self._overlap_add(zero_padding(frames * window[None, :, None], lengths))
        if lengths is None:
            envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, num_frames))
        else:
            # Each item's own envelope: only its valid frames overlap-add their windows.
            squared = window.square()[None, :, None].expand(x.shape[0], -1, num_frames)
            envelope = self._overlap_add(zero_padding(squared, lengths))
        # The floor only matters at the very edges, where few frames overlap.
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)
