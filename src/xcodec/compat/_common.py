"""What the drop-in classes share: a module wrapper around a native codec, batched encode and decode.

The published packages encode a batch by running it through the model as one tensor, which
only works when every item has the same length (and, in ``xcodec2`` 0.1.5, only for one
item). Here a batch goes through the codec's batch-invariant ``tokenize`` / ``detokenize``:
each item's codes and audio are exactly those it gets alone, which for one item (or items
of one length) is what the package computes.
"""

from __future__ import annotations

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
