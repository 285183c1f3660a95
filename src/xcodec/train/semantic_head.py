"""The semantic reconstruction head of X-Codec2 training (never part of an inference checkpoint).

From the quantised latents the head predicts the frozen W2V-BERT features the codes were
made from (``hidden_states[16]``); its MSE to them is the recipe's semantic loss, which
keeps semantic content in the codes. Layout of zhenye234/X-Codec-2.0
(``lightning_module.py``: ``fc_post_s`` then ``SemanticDecoder_module``, ``vq/module.py``
``SemanticDecoder``): the attribute names are the original's, so this module's state-dict
keys equal the Lightning checkpoint's ``fc_post_s.*`` and ``SemanticDecoder_module.*`` keys
and load from it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from xcodec.errors import CheckpointError

__all__ = ["ORIGINAL_PREFIXES", "SemanticDecoder", "SemanticReconstructionHead"]

# Key prefixes of the head in an original Lightning checkpoint's ``state_dict``.
ORIGINAL_PREFIXES = ("fc_post_s.", "SemanticDecoder_module.")


class SemanticDecoder(nn.Module):
    """Three-tap conv, a residual pair of three-tap convs, a three-tap conv: (batch, C, frames) -> same.

    Quirk "in-place ReLU before the skip" (the original's ``nn.ReLU(inplace=True)`` first in
    ``residual_blocks``): the ReLU overwrites its input, so the skip adds relu(x), not x.
    The published adapter on the encoder side (``Xcodec2SemanticAdapter``) has the same
    arithmetic. Keys ``residual_blocks.1`` / ``.3`` are the original's Sequential indices.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.initial_conv = nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False)
        self.residual_blocks = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding),
        )
        self.final_conv = nn.Conv1d(channels, channels, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, channels, frames) -> (batch, channels, frames)."""
        x = self.initial_conv(x)
        x = self.residual_blocks(x) + torch.relu(x)
        return self.final_conv(x)


class SemanticReconstructionHead(nn.Module):
    """``fc_post_s`` (quantization_dim -> semantic hidden) then :class:`SemanticDecoder`.

    quantized (batch, frames, quantization_dim), the FSQ output after its up-projection
    -> (batch, frames, semantic_hidden), comparable with the W2V-BERT ``hidden_states[16]``.
    """

    def __init__(self, quantization_dim: int, semantic_hidden: int) -> None:
        super().__init__()
        self.fc_post_s = nn.Linear(quantization_dim, semantic_hidden)
        # Named as in the original Lightning module, so its checkpoint keys load as they are.
        self.SemanticDecoder_module = SemanticDecoder(semantic_hidden)

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        """quantized: (batch, frames, quantization_dim) -> (batch, frames, semantic_hidden)."""
        semantic = self.fc_post_s(quantized).transpose(1, 2)
        return self.SemanticDecoder_module(semantic).transpose(1, 2)

    def load_original_state_dict(self, state_dict: dict[str, torch.Tensor]) -> bool:
        """Load the head from an original Lightning ``state_dict`` if it holds one; strict on its keys.

        Returns False (and leaves the weights as they are) when no key of the head is
        present; raises :class:`~xcodec.errors.CheckpointError` naming the keys when only
        some are, or a shape differs.
        """
        found = {key: value for key, value in state_dict.items() if key.startswith(ORIGINAL_PREFIXES)}
        if not found:
            return False
        expected = self.state_dict()
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        if missing or unexpected:
            raise CheckpointError(
                f"semantic reconstruction head: missing keys {missing}, unexpected keys {unexpected}"
            )
        wrong = [
            f"{key} {tuple(found[key].shape)} (expected {tuple(value.shape)})"
            for key, value in expected.items()
            if found[key].shape != value.shape
        ]
        if wrong:
            raise CheckpointError(f"semantic reconstruction head: shape mismatch for {wrong}")
        self.load_state_dict(found, strict=True)
        return True
