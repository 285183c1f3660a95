"""The elementwise activations a Transformers ``hidden_act``-style string names (its ``ACT2FN``).

One table for every module that builds from a config string (W2V-BERT, HuBERT/WavLM,
the Vocos decoder), so a name means the same function everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from xcodec.errors import ConfigError

__all__ = ["ACTIVATIONS", "activation_function"]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# "gelu" is the exact (erf) GELU; "gelu_new" and "gelu_pytorch_tanh" its tanh approximation.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``name`` names; :class:`~xcodec.errors.ConfigError` (a ValueError) for one we lack."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"unsupported activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None
