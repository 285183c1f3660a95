"""The Vocos ISTFT head: linear -> (log-magnitude, phase) -> "same"-padded inverse STFT.

With per-item ``lengths``, padded frames are left out of the overlap-add and of the
window envelope, so every item's valid output equals its alone-run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.ops.masking import zero_padding

__all__ = ["ISTFTHead"]


class ISTFTHead(nn.Module):
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

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, frames, hidden); lengths: (batch,) valid frames or None -> (batch, 1, frames * hop)."""
        log_magnitude, phase = self.linear(x).chunk(2, dim=-1)
        # Complex math needs float32 (no ComplexHalf FFT); the clamp (at 100) is the original's.
        magnitude = log_magnitude.float().exp().clamp(max=1e2)
        spectrum = torch.polar(magnitude, phase.float())
        frames = torch.fft.irfft(spectrum, self.n_fft, dim=-1, norm="backward").transpose(1, 2)
        window = self.window.float()
        num_frames = spectrum.shape[1]
        audio = self._overlap_add(zero_padding(frames * window[None, :, None], lengths))
        if lengths is None:
            envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, num_frames))
        else:
            # Each item's own envelope: only its valid frames overlap-add their windows.
            squared = window.square()[None, :, None].expand(x.shape[0], -1, num_frames)
            envelope = self._overlap_add(zero_padding(squared, lengths))
        # The floor only matters at the very edges, where few frames overlap.
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)
