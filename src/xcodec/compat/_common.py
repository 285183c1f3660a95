"""What the drop-in classes share: a module wrapper around a native codec, batched encode and decode.

The published packages encode a batch by running it through the model as one tensor, which
only works when every item has the same length (and, in ``xcodec2`` 0.1.5, only for one
item). Here a batch goes through the codec's batch-invariant ``tokenize`` / ``detokenize``:
each item's codes and audio are exactly those it gets alone, which for one item (or items
of one length) is what the package computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from xcodec.audio import resample
from xcodec.base import CodecModel
from xcodec.errors import ArgumentError, AudioError

# Code dtype of the packages' ``encode_code`` (vector-quantize-pytorch's FSQ indices).
CODE_DTYPE = torch.int32


class DropInCodec(nn.Module):
    """An ``nn.Module`` holding a native codec as ``self.codec``.

    Being a module, ``.eval()``, ``.to(device)``, ``.cuda()``, ``.half()`` and
    ``.parameters()`` work as on the packages' classes.
    """

    def __init__(self, codec: CodecModel) -> None:
        super().__init__()
        self.codec = codec
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.codec.device

    @property
    def dtype(self) -> torch.dtype:
        return self.codec.dtype


def hub_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The package's ``from_pretrained`` keyword arguments, translated to ours.

    ``torch_dtype`` (Transformers' older name) becomes ``dtype``, ``map_location`` (the
    huggingface_hub mixin's) becomes ``device``; keyword arguments that only steered the
    packages' downloads (``force_download``, ``proxies``, ``resume_download``, ``strict``)
    are accepted and ignored; anything else goes to our ``from_pretrained``, which rejects
    what it does not know.
    """
    options = dict(kwargs)
    if "torch_dtype" in options:
        options.setdefault("dtype", options.pop("torch_dtype"))
    if "map_location" in options:
        options.setdefault("device", options.pop("map_location"))
    for ignored in ("force_download", "proxies", "resume_download", "strict"):
        options.pop(ignored, None)
    return options


def resample_items(items: Sequence[torch.Tensor], sample_rate: int, target: int) -> list[torch.Tensor]:
    """Each (samples,) item resampled to ``target`` Hz (soxr), unchanged when the rates agree."""
    if sample_rate == target:
        return list(items)
    return [resample(item.detach().float().cpu(), int(sample_rate), target) for item in items]


def sinc_resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample (..., samples) as ``torchaudio.transforms.Resample(orig_freq, new_freq)`` does by default.

    The ``neucodec`` package resamples files with it, so codes of a file at another rate
    match the package's only with the same filter: a Hann-windowed sinc low-pass at 0.99
    of the lower Nyquist frequency, 6 zero crossings each side, one polyphase kernel per
    output phase (computed in float64, applied in float32); ``ceil(new * samples / orig)``
    output samples. Cheaper and less accurate than soxr, which the rest of xcodec uses.
    """
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    if orig == new:
        return waveform
    zero_crossings = 6
    cutoff = min(orig, new) * 0.99
    width = math.ceil(zero_crossings * orig / cutoff)
    # Kernel k, tap i: sinc at time i / orig - k / new (in input samples / orig), windowed.
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    times = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + taps[None, :]) * cutoff
    times = times.clamp(-zero_crossings, zero_crossings)
    window = torch.cos(times * math.pi / zero_crossings / 2) ** 2
    phase = times * math.pi
    sinc = torch.where(phase == 0, torch.ones_like(phase), torch.sin(phase) / phase)
    kernels = (sinc * window * (cutoff / orig)).to(torch.float32)[:, None, :]  # (new, 1, taps)
    shape = waveform.shape
    flat = waveform.reshape(-1, 1, shape[-1]).float()
    padded = nn.functional.pad(flat, (width, width + orig))
    out = nn.functional.conv1d(padded, kernels.to(flat.device), stride=orig)  # (N, new, steps)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, : math.ceil(new * shape[-1] / orig)]
    return out.reshape(*shape[:-1], -1)


def check_items(items: Sequence[torch.Tensor], argument: str) -> None:
    for index, item in enumerate(items):
        if item.dim() != 1:
            raise ArgumentError(f"{argument}[{index}]: expected (samples,), got shape {tuple(item.shape)}")
        if item.numel() == 0:
            raise AudioError(f"{argument}[{index}] is empty (0 samples)")
        if not bool(torch.isfinite(item).all()):
            raise AudioError(f"{argument}[{index}] holds NaN or Inf")


def pad_items(items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """((batch, max samples) float32 zero-padded on the right, (batch,) lengths)."""
    lengths = torch.tensor([item.shape[-1] for item in items], dtype=torch.long)
    padded = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)
    for index, item in enumerate(items):
        padded[index, : item.shape[-1]] = item.detach().float().cpu()
    return padded, lengths


@torch.no_grad()
def encode_items(codec: CodecModel, items: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (samples,) item at the codec's input rate -> its codes alone, (1, frames) int32 on the codec's device."""
    padded, lengths = pad_items(items)
    result = codec.tokenize(padded.to(device=codec.device, dtype=codec.dtype), lengths)
    codes = result.audio_codes.to(device=codec.device, dtype=CODE_DTYPE)  # (batch, 1, frames)
    return [codes[index, :, : int(n)] for index, n in enumerate(result.code_lengths)]


def stack_equal(items: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """``torch.stack`` of the items when they all have one shape, else None."""
    if len({tuple(item.shape) for item in items}) == 1:
        return torch.stack(list(items))
    return None


def codes_tensor(vq_code: Any, argument: str) -> torch.Tensor:
    """Codes as a (batch, 1, frames) long tensor; (frames,) and (batch, frames) are taken too."""
    codes = torch.as_tensor(vq_code)
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ArgumentError(f"{argument}: codes must be integers, got {codes.dtype}")
    if codes.dim() == 1:
        codes = codes[None, None, :]
    elif codes.dim() == 2:
        codes = codes[:, None, :]
    if codes.dim() != 3 or codes.shape[1] != 1:
        raise ArgumentError(
            f"{argument}: expected codes of shape (batch, 1, frames), got {tuple(codes.shape)}"
        )
    if codes.shape[-1] == 0:
        raise ArgumentError(f"{argument}: no code frames")
    return codes.long()


@torch.no_grad()
def decode_items(codec: CodecModel, items: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (1, 1, frames) code tensor -> its audio alone, (1, 1, frames * hop) at the codec's output rate."""
    lengths = torch.tensor([item.shape[-1] for item in items], dtype=torch.long)
    codes = torch.zeros(len(items), 1, int(lengths.max()), dtype=torch.long)
    for index, item in enumerate(items):
        codes[index, :, : item.shape[-1]] = item[0].cpu()
    result = codec.detokenize(codes, lengths)
    return [result.audio[index : index + 1, None, : int(n)] for index, n in enumerate(result.lengths)]
