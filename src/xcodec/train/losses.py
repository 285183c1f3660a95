"""Loss terms of the X-Codec2 recipe (zhenye234/X-Codec-2.0 ``criterions/`` and ``lightning_module.py``).

The generator minimises ``mel * MultiScaleMelLoss + adv * lsgan_generator_loss + fm *
feature_matching_loss + semantic * semantic_loss`` (weights in the recipe,
:class:`~xcodec.train.recipe.LossWeights`); the discriminators minimise
:func:`lsgan_discriminator_loss`. Each term is summed over discriminators / scales, as the
original does, not averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MultiScaleMelLoss",
    "feature_matching_loss",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mel_filterbank",
    "semantic_loss",
]


def _hz_to_mel_slaney(freq: torch.Tensor) -> torch.Tensor:
    # Slaney's Auditory Toolbox scale: linear below 1 kHz (3 mels per 200 Hz), log above.
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, math.log(6.4) / 27.0
    linear = 3.0 * freq / 200.0
    log = min_log_mel + torch.log(freq.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log, linear)


def _mel_to_hz_slaney(mels: torch.Tensor) -> torch.Tensor:
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, math.log(6.4) / 27.0
    linear = 200.0 * mels / 3.0
    log = min_log_hz * torch.exp(logstep * (mels - min_log_mel))
    return torch.where(mels >= min_log_mel, log, linear)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) float64 triangular filters, Slaney scale and Slaney (area) norm, 0..sr/2.

    The filters of ``torchaudio.transforms.MelSpectrogram(norm="slaney", mel_scale="slaney")``,
    which the original mel loss uses: triangles in Hz between mel-spaced edges, each scaled
    by 2 / (its width in Hz) so every filter has the same area.
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(
        float(_hz_to_mel_slaney(torch.tensor(0.0, dtype=torch.float64))),
        float(_hz_to_mel_slaney(torch.tensor(sample_rate / 2, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]  # (n_mels + 1,)
    slopes = hz_edges[None, :] - all_freqs[:, None]  # (freqs, n_mels + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return filters * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[None, :]


class MultiScaleMelLoss(nn.Module):
    """Sum over scales of the L1 distance between log10 mel magnitude spectrograms.

    Scale s: a centred (reflect-padded) STFT with a periodic Hann window of
    ``windows[s]`` samples, hop ``windows[s] // 4``, magnitude (power 1), ``n_mels[s]``
    Slaney mel filters, ``log10(max(mel, 1e-5))``; the mean absolute difference over
    (batch, mels, frames). The seven default scales are the original's, so the value is
    comparable with its logged ``mel_loss``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        windows: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        clamp_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(n_mels) != len(windows):
            raise ValueError(f"n_mels ({len(n_mels)}) and windows ({len(windows)}) must have the same length")
        self.sample_rate = sample_rate
        self.n_mels = tuple(int(n) for n in n_mels)
        self.windows = tuple(int(w) for w in windows)
        self.clamp_eps = clamp_eps
        for index, (mels, window) in enumerate(zip(self.n_mels, self.windows, strict=True)):
            # Buffers follow .to(device); non-persistent: derived from the arguments.
            self.register_buffer(
                f"filters_{index}", mel_filterbank(window, mels, sample_rate).float(), persistent=False
            )
            self.register_buffer(f"window_{index}", torch.hann_window(window), persistent=False)

    def log_mel(self, audio: torch.Tensor, scale: int) -> torch.Tensor:
        """audio (batch, samples) -> (batch, n_mels[scale], frames) log10 mel magnitudes, in float32."""
        window_length = self.windows[scale]
        window: torch.Tensor = getattr(self, f"window_{scale}")
        filters: torch.Tensor = getattr(self, f"filters_{scale}")
        spectrum = torch.stft(
            audio.float(),
            n_fft=window_length,
            hop_length=window_length // 4,
            window=window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()  # (batch, freqs, frames)
        mel = torch.matmul(spectrum.transpose(1, 2), filters).transpose(1, 2)
        return mel.clamp(min=self.clamp_eps).log10()

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """est, ref: (batch, samples) -> scalar loss (sum over the scales of the mean L1 of log-mels)."""
        if est.shape != ref.shape:
            raise ValueError(f"est {tuple(est.shape)} and ref {tuple(ref.shape)} must have the same shape")
        total = est.new_zeros((), dtype=torch.float32)
        for scale in range(len(self.windows)):
            total = total + F.l1_loss(self.log_mel(est, scale), self.log_mel(ref, scale))
        return total


def lsgan_discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Least-squares GAN loss of the discriminators: sum over them of mean((real - 1)^2) + mean(fake^2).

    real_logits, fake_logits: one tensor of any shape per discriminator (real audio, and
    generated audio detached from the generator).
    """
    if len(real_logits) != len(fake_logits) or not real_logits:
        raise ValueError(
            f"need as many real ({len(real_logits)}) as fake ({len(fake_logits)}) logits, at least one"
        )
    terms = [
        F.mse_loss(real.float(), torch.ones_like(real, dtype=torch.float32))
        + F.mse_loss(fake.float(), torch.zeros_like(fake, dtype=torch.float32))
        for real, fake in zip(real_logits, fake_logits, strict=True)
    ]
    return torch.stack(terms).sum()


def lsgan_generator_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the generator: sum over discriminators of mean((fake - 1)^2)."""
    if not fake_logits:
        raise ValueError("need at least one discriminator's logits")
    terms = [F.mse_loss(fake.float(), torch.ones_like(fake, dtype=torch.float32)) for fake in fake_logits]
    return torch.stack(terms).sum()


def feature_matching_loss(
    real_feats: Sequence[Sequence[torch.Tensor]], fake_feats: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Sum over discriminators and their layers of mean |fake - real| (real feature maps detached).

    real_feats, fake_feats: per discriminator, its hidden feature maps (the logits excluded),
    as :class:`~xcodec.train.discriminators.Discriminators` returns them.
    """
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"need as many real ({len(real_feats)}) as fake ({len(fake_feats)}) feature lists")
    terms: list[torch.Tensor] = []
    for index, (real_maps, fake_maps) in enumerate(zip(real_feats, fake_feats, strict=True)):
        if len(real_maps) != len(fake_maps):
            raise ValueError(
                f"discriminator {index}: {len(real_maps)} real and {len(fake_maps)} fake feature maps"
            )
        terms.extend(
            F.l1_loss(fake.float(), real.detach().float())
            for real, fake in zip(real_maps, fake_maps, strict=True)
        )
    return torch.stack(terms).sum()


def semantic_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the reconstructed and the frozen encoder's semantic features.

    pred, target: (batch, frames, semantic_hidden); the target is detached (the encoder is frozen).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    return F.mse_loss(pred.float(), target.detach().float())
