"""Residual vector quantisation with Euclidean codebooks (EnCodec / X-Codec style).

Each stage picks, for every frame, the codebook row nearest to the current residual in
squared Euclidean distance, and subtracts it; the codes of all stages together describe
the frame. Module names follow Transformers' ``XcodecResidualVectorQuantization``
(``quantizers.N.codebook.embed``) so the state-dict keys match.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.errors import ArgumentError

__all__ = ["EuclideanCodebook", "ResidualVectorQuantizer", "VectorQuantizer"]


class EuclideanCodebook(nn.Module):
    """``codebook_size`` vectors of ``dim`` floats; only ``embed`` is used at inference.

    ``inited``, ``cluster_size`` and ``embed_avg`` are the k-means / EMA training state of
    the original code. They are kept as buffers only because published checkpoints (and
    Transformers' model) carry them, so a load -> save round trip keeps every key.
    """

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.inited = nn.Buffer(torch.ones(1))
        self.cluster_size = nn.Buffer(torch.zeros(codebook_size))
        self.embed = nn.Buffer(torch.zeros(codebook_size, dim))
        self.embed_avg = nn.Buffer(torch.zeros(codebook_size, dim))

    def quantize(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook row: (num_vectors, dim) -> (num_vectors,) int64."""
        embed_t = self.embed.t()
        # Expanded form -(|x|^2 - 2 x.e + |e|^2), evaluated in this exact order as in the
        # reference (EnCodec's quantize), so float rounding, and with it the choice between
        # near-equidistant rows, is the same. tests/test_xcodec_model.py pins the codes.
        distance = -(
            vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ embed_t + embed_t.pow(2).sum(0, keepdim=True)
        )
        return distance.max(dim=-1).indices

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook rows: (...) int -> (..., dim)."""
        return F.embedding(indices, self.embed)


class VectorQuantizer(nn.Module):
    """One RVQ stage over channel-first features."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.codebook = EuclideanCodebook(codebook_size, dim)

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, dim, frames) -> codes (batch, frames) int64."""
        batch, dim, frames = hidden_states.shape
        vectors = hidden_states.permute(0, 2, 1).reshape(-1, dim)
        return self.codebook.quantize(vectors).view(batch, frames)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (batch, frames) -> (batch, dim, frames)."""
        return self.codebook.lookup(codes).permute(0, 2, 1)


class ResidualVectorQuantizer(nn.Module):
    """``num_quantizers`` stages; encoding may use only the first few (lower bitrate)."""

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.quantizers = nn.ModuleList([VectorQuantizer(codebook_size, dim) for _ in range(num_quantizers)])

    @property
    def num_quantizers(self) -> int:
        return len(self.quantizers)

    @property
    def stages(self) -> list[VectorQuantizer]:
        return [cast(VectorQuantizer, stage) for stage in self.quantizers]

    def encode(self, embeddings: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        """(batch, dim, frames) -> codes (batch, num_quantizers, frames) int64."""
        if not 1 <= num_quantizers <= self.num_quantizers:
            raise ArgumentError(f"num_quantizers must be in 1..{self.num_quantizers}, got {num_quantizers}")
        residual = embeddings
        codes = []
        for stage in self.stages[:num_quantizers]:
            stage_codes = stage.encode(residual)
            residual = residual - stage.decode(stage_codes)
            codes.append(stage_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (batch, num_stages, frames), num_stages <= num_quantizers -> (batch, dim, frames).

        The stages are summed first to last, the reference's order, so the float sum is
        the same bit for bit.
        """
        _, num_stages, _ = codes.shape
        if not 1 <= num_stages <= self.num_quantizers:
            raise ArgumentError(
                f"codes carry {num_stages} codebooks; this quantizer has 1..{self.num_quantizers}"
            )
        stages = self.stages
        quantized = stages[0].decode(codes[:, 0])
        for index in range(1, num_stages):
            quantized = quantized + stages[index].decode(codes[:, index])
        return quantized
