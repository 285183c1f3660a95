"""The X-Codec2 recipe's discriminators: HiFi-GAN multi-period and multi-resolution STFT.

Architectures as in zhenye234/X-Codec-2.0 ``module/mpd.py`` (``HiFiGANMultiPeriodDiscriminator``)
and ``module/mstft.py`` (``SpecDiscriminator``), widths from the recipe
(:class:`~xcodec.train.recipe.DiscriminatorConfig`). Submodule names follow the original
(``discriminators.{i}.convs.{j}.0``, ``model.disc_{i}.model.layer_{k}``) so its weights map
over by name; every convolution is weight-normalised, as there.

Every discriminator returns its logits and its hidden feature maps (each layer's output
after its activation; the logits excluded) for feature matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from xcodec.errors import CheckpointError
from xcodec.train.recipe import DiscriminatorConfig

__all__ = [
    "Discriminators",
    "MultiPeriodDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "PeriodDiscriminator",
    "SpectrogramDiscriminator",
]

DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]

# Original Lightning state-dict prefixes -> ours, and the old weight-norm names -> the
# parametrization's (``torch.nn.utils.weight_norm`` is deprecated; same g and v tensors).
_ORIGINAL_PREFIXES = {"discriminator.": "mpd.", "spec_discriminator.": "mrsd."}
_WEIGHT_NORM_SUFFIXES = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: audio folded into (time / period, period), 2-D convs along time.

    ``channels`` first width, times ``channel_factor`` per layer up to ``max_channels``;
    ``downsample_scales`` strides along time (kernel 5, LeakyReLU 0.1), then a (2, 1) conv
    to one logit channel. Each logit sees only the samples of its own phase (column) of the
    period, within the layers' receptive field along time.
    """

    def __init__(
        self,
        period: int,
        channels: int = 16,
        max_channels: int = 512,
        channel_factor: int = 4,
        downsample_scales: Sequence[int] = (3, 3, 3, 3, 1),
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.period = period
        self.convs = nn.ModuleList()
        in_channels, out_channels = 1, channels
        for scale in downsample_scales:
            conv = nn.Conv2d(
                in_channels, out_channels, (kernel_size, 1), (scale, 1), padding=((kernel_size - 1) // 2, 0)
            )
            self.convs.append(nn.Sequential(weight_norm(conv), nn.LeakyReLU(0.1)))
            in_channels = out_channels
            out_channels = min(out_channels * channel_factor, max_channels)
        # The original's output kernel is (kernel_sizes[1] - 1, 1) = (2, 1) with padding 1:
        # one row more than its input, kept for weight compatibility.
        self.output_conv = weight_norm(nn.Conv2d(in_channels, 1, (2, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (batch, 1, samples) -> (logits (batch, rows * period), feature maps (batch, C, rows_l, period))."""
        B, C, T = audio.shape
        if T % self.period:
            # Reflect-pad the end to a whole number of periods, as the original.
            audio = F.pad(audio, (0, self.period - T % self.period), mode="reflect")
        x = audio.reshape(B, C, -1, self.period)
        features = []
        for layer in self.convs:
            x = layer(x)
            features.append(x)
        logits = torch.flatten(self.output_conv(x), 1, -1)
        return logits, features


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11 in the recipe)."""

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: int = 16,
        max_channels: int = 512,
        channel_factor: int = 4,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(period, channels, max_channels, channel_factor) for period in periods
        )

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        """audio (batch, 1, samples) -> (logits per period, feature maps per period)."""
        logits, features = [], []
        for discriminator in self.discriminators:
            period_logits, period_features = discriminator(audio)
            logits.append(period_logits)
            features.append(period_features)
        return logits, features


class SpectrogramDiscriminator(nn.Module):
    """2-D conv stack over one STFT magnitude (original ``NLayerSpecDiscriminator``).

    A stride-2 5x5 conv, then one 5x5 conv of stride 2 per ``downsample_scales`` entry
    (width doubled up to ``max_channels``), a 3x3 conv, then a 3x3 conv to one logit
    channel; LeakyReLU 0.2 after all but the last.
    """

    def __init__(
        self,
        fft_size: int,
        hop_size: int,
        win_length: int,
        channels: int = 32,
        max_channels: int = 512,
        downsample_scales: Sequence[int] = (2, 2, 2),
        kernel_sizes: tuple[int, int] = (5, 3),
    ) -> None:
        super().__init__()
        self.fft_size, self.hop_size, self.win_length = fft_size, hop_size, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        first, last = kernel_sizes
        layers: dict[str, nn.Module] = {
            "layer_0": nn.Sequential(
                weight_norm(nn.Conv2d(1, channels, first, stride=2, padding=first // 2)), nn.LeakyReLU(0.2)
            )
        }
        in_channels = channels
        for index, scale in enumerate(downsample_scales):
            out_channels = min(in_channels * scale, max_channels)
            conv = nn.Conv2d(in_channels, out_channels, scale * 2 + 1, stride=scale, padding=scale)
            layers[f"layer_{index + 1}"] = nn.Sequential(weight_norm(conv), nn.LeakyReLU(0.2))
            in_channels = out_channels
        out_channels = min(in_channels * 2, max_channels)
        layers[f"layer_{len(downsample_scales) + 1}"] = nn.Sequential(
            weight_norm(nn.Conv2d(in_channels, out_channels, last, padding=last // 2)), nn.LeakyReLU(0.2)
        )
        layers[f"layer_{len(downsample_scales) + 2}"] = weight_norm(
            nn.Conv2d(out_channels, 1, last, padding=last // 2)
        )
        self.model = nn.ModuleDict(layers)

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (batch, samples) -> (batch, 1, freqs, frames) STFT magnitude, clamped as the original."""
        window: torch.Tensor = self.window  # type: ignore[assignment]
        spectrum = torch.stft(
            audio.float(),
            self.fft_size,
            self.hop_size,
            self.win_length,
            window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        # The clamp keeps the square root's gradient finite at silent bins.
        power = (spectrum.real**2 + spectrum.imag**2).clamp(min=1e-7, max=1e3)
        return power.sqrt()[:, None]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (batch, samples) -> (logits (batch, 1, freqs', frames'), feature maps)."""
        x = self.spectrogram(audio).to(audio.dtype)
        features = []
        for layer in self.model.values():
            x = layer(x)
            features.append(x)
        return features[-1], features[:-1]


class MultiResolutionSTFTDiscriminator(nn.Module):
    """One :class:`SpectrogramDiscriminator` per (fft size, hop, window) resolution (original ``SpecDiscriminator``)."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = (78, 126, 206, 334, 542, 876, 1418, 2296),
        hop_sizes: Sequence[int] = (39, 63, 103, 167, 271, 438, 709, 1148),
        win_lengths: Sequence[int] = (78, 126, 206, 334, 542, 876, 1418, 2296),
        channels: int = 32,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.model = nn.ModuleDict(
            {
                f"disc_{index}": SpectrogramDiscriminator(fft, hop, win, channels, max_channels)
                for index, (fft, hop, win) in enumerate(zip(fft_sizes, hop_sizes, win_lengths, strict=True))
            }
        )

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        """audio (batch, 1, samples) -> (logits per resolution, feature maps per resolution)."""
        logits, features = [], []
        for discriminator in self.model.values():
            resolution_logits, resolution_features = discriminator(audio[:, 0, :])
            logits.append(resolution_logits)
            features.append(resolution_features)
        return logits, features


class Discriminators(nn.Module):
    """Both discriminators of the recipe; their outputs concatenated (multi-period first).

    Build it from a recipe with :meth:`from_config`. The generator's adversarial and
    feature-matching losses and the discriminators' loss sum over all of them, as the
    original does.
    """

    def __init__(
        self,
        mpd: MultiPeriodDiscriminator | None = None,
        mrsd: MultiResolutionSTFTDiscriminator | None = None,
    ) -> None:
        super().__init__()
        self.mpd = mpd if mpd is not None else MultiPeriodDiscriminator()
        self.mrsd = mrsd if mrsd is not None else MultiResolutionSTFTDiscriminator()

    @classmethod
    def from_config(cls, config: DiscriminatorConfig) -> Discriminators:
        """From a recipe's :class:`~xcodec.train.recipe.DiscriminatorConfig` (``recipe.discriminators``)."""
        return cls(
            MultiPeriodDiscriminator(
                config.periods, config.mpd_channels, config.mpd_max_channels, config.mpd_channel_factor
            ),
            MultiResolutionSTFTDiscriminator(
                config.fft_sizes,
                config.hop_sizes,
                config.win_lengths,
                config.stft_channels,
                config.stft_max_channels,
            ),
        )

    def load_original_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """Load both discriminators from an original Lightning ``state_dict`` if it holds them.

        The original keys are ``discriminator.*`` (multi-period) and ``spec_discriminator.*``
        (STFT) with the old weight-norm pair ``weight_g`` / ``weight_v``; ours are ``mpd.*``
        and ``mrsd.*`` with ``parametrizations.weight.original0`` / ``original1`` (same
        tensors). Returns False, changing nothing, when neither prefix is present; raises
        :class:`~xcodec.errors.CheckpointError` naming the keys when any is missing,
        unexpected or of another shape (e.g. a recipe's widths differ from the checkpoint's).
        """
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            for original, ours in _ORIGINAL_PREFIXES.items():
                if key.startswith(original):
                    name = ours + key[len(original) :]
                    for old, new in _WEIGHT_NORM_SUFFIXES.items():
                        if name.endswith(old):
                            name = name[: -len(old)] + new
                    mapped[name] = value
        if not mapped:
            return False
        expected = self.state_dict()
        missing = sorted(set(expected) - set(mapped))
        unexpected = sorted(set(mapped) - set(expected))
        wrong = sorted(
            f"{key} {tuple(mapped[key].shape)} (expected {tuple(value.shape)})"
            for key, value in expected.items()
            if key in mapped and mapped[key].shape != value.shape
        )
        if missing or unexpected or wrong:
            raise CheckpointError(
                f"discriminators: missing keys {missing}, unexpected keys {unexpected}, shape mismatches {wrong}"
            )
        self.load_state_dict(mapped, strict=True)
        return True

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        """audio (batch, 1, samples) -> (logits: one tensor per discriminator, feature maps: one list per discriminator)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be (batch, 1, samples), got {tuple(audio.shape)}")
        mpd_logits, mpd_features = self.mpd(audio)
        stft_logits, stft_features = self.mrsd(audio)
        return mpd_logits + stft_logits, mpd_features + stft_features
