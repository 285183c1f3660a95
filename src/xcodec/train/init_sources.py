"""Where a run's starting weights come from (``xcodec train --init``).

- a Transformers-layout checkpoint (hub id or folder) or the original ``xcodec2`` layout:
  read by :meth:`Xcodec2Model.from_pretrained` (which tells the two apart);
- an original Lightning ``.ckpt``: read with ``torch.load(weights_only=True)`` and an
  explicit allow-list (no code runs while reading; any other pickled global is refused);
  its generator, semantic head and discriminator states are used where present;
- a ``config.json``: a model built from it (recipe ``model`` keys over it) and re-drawn
  by :func:`~xcodec.train.init.reinit_for_training_`: training from scratch.
- nothing (``--init`` omitted): from scratch with the recipe's ``model`` config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.errors import CheckpointError, ConfigError
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.train.init import reinit_for_training_

__all__ = ["LIGHTNING_SAFE_GLOBALS", "InitWeights", "load_init", "read_lightning_checkpoint"]

# Globals a Lightning checkpoint of the original recipe may pickle besides tensors and
# containers (which weights_only allows already). Nothing that can run code.
LIGHTNING_SAFE_GLOBALS: list[Any] = [dict, list, tuple, set, frozenset, slice]


@dataclasses.dataclass
class InitWeights:
    """model: the generator's inference model (train mode); original_state: the Lightning
    state dict when ``--init`` was one (semantic head and discriminators load from it)."""

    model: Xcodec2Model
    original_state: dict[str, torch.Tensor] | None = None
    from_scratch: bool = False


def read_lightning_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning ``.ckpt``; CheckpointError naming the file if anything else is pickled."""
    try:
        with torch.serialization.safe_globals(LIGHTNING_SAFE_GLOBALS):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"--init {path}: refused or unreadable as a weights-only Lightning checkpoint ({exc})"
        ) from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"--init {path}: no state_dict in this checkpoint")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _scratch(values: dict[str, Any], seed: int, source: str) -> Xcodec2Model:
    try:
        config = Xcodec2Config.from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source} does not describe an X-Codec2 model: {exc}") from exc
    model = Xcodec2Model(config)
    reinit_for_training_(model, seed, include_semantic_encoder=True)
    return model


def load_init(init: str | None, recipe_model: dict[str, Any] | None, seed: int) -> InitWeights:
    """Build the starting model for ``--init`` (see the module docstring); errors name ``--init``."""
    if init is None:
        if recipe_model is None:
            raise ConfigError("--init is required: this recipe has no 'model' config to train from scratch")
        return InitWeights(_scratch(dict(recipe_model), seed, "recipe key 'model'"), from_scratch=True)
    path = Path(init)
    if path.is_file() and path.suffix == ".json":
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--init {path}: cannot read as JSON ({exc})") from exc
        values.update(recipe_model or {})
        return InitWeights(_scratch(values, seed, f"--init {path}"), from_scratch=True)
    if path.is_file() and path.suffix in (".ckpt", ".pt", ".pth"):
        from xcodec.checkpoints.xcodec2_original import convert_original_state

        state = read_lightning_checkpoint(path)
        config = Xcodec2Config.from_dict(dict(recipe_model or {}))
        generator_state = {
            k: v
            for k, v in state.items()
            if not k.startswith(
                ("discriminator.", "spec_discriminator.", "fc_post_s.", "SemanticDecoder_module.")
            )
        }
        converted = convert_original_state(generator_state, config)
        model = Xcodec2Model(config)
        from xcodec.checkpoints.common import load_state_dict_strict

        load_state_dict_strict(model, converted, source=str(path))
        return InitWeights(model.train(), original_state=state)
    try:
        model = Xcodec2Model.from_pretrained(init)
    except CheckpointError as exc:
        raise CheckpointError(f"--init {init}: {exc}") from exc
    if recipe_model:
        model = _with_recipe_config(model, recipe_model, init)
    return InitWeights(model.train())


def _with_recipe_config(model: Xcodec2Model, recipe_model: dict[str, Any], init: str) -> Xcodec2Model:
    """``model`` rebuilt with the recipe's ``model`` keys over its config, its weights loaded strictly.

    For shape-free switches such as ``decoder_causal`` (recipe xcodec2-streaming): the
    causal decoder has the bidirectional one's parameters, so the weights load unchanged.
    A key that changes a shape fails the strict load, naming the parameters.
    """
    from xcodec.checkpoints.common import load_state_dict_strict

    values = model.config.to_dict()
    values.update(recipe_model)
    try:
        config = type(model.config).from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"recipe key 'model' over --init {init}: {exc}") from exc
    if config.to_dict() == model.config.to_dict():
        return model
    rebuilt = type(model)(config)
    load_state_dict_strict(
        rebuilt, model.state_dict(), source=f"--init {init} with the recipe's 'model' keys"
    )
    rebuilt.preprocessor = model.preprocessor
    return rebuilt.to(model.device)
