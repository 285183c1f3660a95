"""Token statistics: codebook usage and entropy, token agreement between two runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from xcodec.errors import ArgumentError

__all__ = ["CodebookUsage", "codebook_usage", "token_agreement"]


@dataclasses.dataclass(frozen=True)
class CodebookUsage:
    """Usage of one codebook (one row of the codes) over all frames given.

    distinct: how many different codes occur. usage: ``distinct / codebook_size``.
    entropy_bits: Shannon entropy of the code histogram in bits (at most
    ``log2(codebook_size)``; ``log2(distinct)`` when every code occurs equally often).
    """

    distinct: int
    usage: float
    entropy_bits: float


def _rows(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    array = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ArgumentError(f"codes: expected (num_codebooks, frames), got shape {array.shape}")
    return array.astype(np.int64)


def codebook_usage(codes: Sequence[torch.Tensor | np.ndarray], codebook_size: int) -> list[CodebookUsage]:
    """One :class:`CodebookUsage` per codebook, pooled over items.

    codes: ``(num_codebooks, frames)`` per item (as ``Codec.encode`` returns them); items
    may differ in frames but must share ``num_codebooks``. Codes outside
    ``[0, codebook_size)`` raise ArgumentError.
    """
    if codebook_size <= 0:
        raise ArgumentError(f"codebook_size must be positive, got {codebook_size}")
    rows = [_rows(item) for item in codes]
    if not rows:
        raise ArgumentError("codebook_usage: no codes given")
    num_codebooks = rows[0].shape[0]
    if any(r.shape[0] != num_codebooks for r in rows):
        raise ArgumentError(
            f"codebook_usage: items differ in codebook count ({sorted({r.shape[0] for r in rows})})"
        )
    pooled = np.concatenate(rows, axis=1)  # (num_codebooks, all frames)
    if pooled.size and (pooled.min() < 0 or pooled.max() >= codebook_size):
        raise ArgumentError(f"codebook_usage: codes outside [0, {codebook_size})")
    result = []
    for row in pooled:
        counts = np.bincount(row, minlength=codebook_size)
        counts = counts[counts > 0]
        p = counts / counts.sum() if counts.size else counts.astype(np.float64)
        entropy = float(-(p * np.log2(p)).sum()) if p.size else 0.0
        distinct = int(counts.size)
        result.append(CodebookUsage(distinct, distinct / codebook_size, entropy if entropy > 0 else 0.0))
    return result


def token_agreement(a: Sequence[torch.Tensor | np.ndarray], b: Sequence[torch.Tensor | np.ndarray]) -> float:
    """Share of equal codes between two runs over the same items (1.0 = identical tokens).

    Items are compared over the codebooks and frames they share (a run at a lower
    bandwidth has fewer codebooks); differing lengths count the extra frames as unequal.
    """
    if len(a) != len(b):
        raise ArgumentError(f"token_agreement: {len(a)} items against {len(b)}")
    equal = total = 0
    for x, y in zip(a, b, strict=True):
        rx, ry = _rows(x), _rows(y)
        books = min(rx.shape[0], ry.shape[0])
        frames = min(rx.shape[1], ry.shape[1])
        equal += int((rx[:books, :frames] == ry[:books, :frames]).sum())
        total += books * max(rx.shape[1], ry.shape[1])
    return equal / total if total else math.nan
