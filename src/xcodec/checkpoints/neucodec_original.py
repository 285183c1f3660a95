"""NeuCodec checkpoints in the ORIGINAL layout (``neuphonic/neucodec``, the ``neucodec`` package).

The hub repo holds ``pytorch_model.bin`` (a bare state dict, read here with
``torch.load(weights_only=True)`` only) and ``meta.yaml`` (download tracking, no sizes),
no ``config.json``: the package hard-codes every size (they are the defaults of
:class:`~xcodec.configs.neucodec.NeuCodecConfig`). The keys carry the original X-Codec2
prefixes (``CodecEnc.``, ``SemanticEncoder_module.``, ``fc_prior.``, ``fc_post_a.``,
``generator.quantizer.project_in/out``, ``generator.backbone.*`` with the fused
``att.c_attn``, ``generator.head.out``), so the conversion is X-Codec2's mapping table
(:mod:`xcodec.checkpoints.xcodec2_original`) with three differences:

* no ``semantic_model.`` tensors: the package builds W2V-BERT 2.0 from
  ``facebook/w2v-bert-2.0`` at run time; we read its first 16 layers from a hub id or a
  local Transformers-layout folder (``semantic_model=``) and put them where X-Codec2's
  original layout has them;
* training-only heads (``fc_post_s*``, ``SemanticDecoder*``) are dropped by name, as the
  package itself does;
* weight norm may sit on the decoder's ``embed`` and ResNet convolutions too (Transformers'
  converter folds it there): every ``weight_g``/``weight_v`` (or parametrization) pair
  under ``generator.`` is folded into a plain ``weight`` first.

Everything else is strict: a tensor the table does not consume, or one it needs and does
not find, raises :class:`~xcodec.errors.CheckpointError` naming the keys.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints.common import (
    CONFIG_NAME,
    fold_weight_norm,
    load_pickle_state_dict,
    load_safetensors_folder,
    resolve_checkpoint,
)
from xcodec.checkpoints.xcodec2_original import convert_original_state
from xcodec.configs.base import ConfigError
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig
from xcodec.errors import CheckpointError

__all__ = [
    "DEFAULT_SEMANTIC_MODEL",
    "ORIGINAL_WEIGHTS_NAME",
    "convert_original_neucodec_state",
    "is_original_neucodec",
    "load_original_neucodec_state",
]

ORIGINAL_WEIGHTS_NAME = "pytorch_model.bin"
DEFAULT_SEMANTIC_MODEL = "facebook/w2v-bert-2.0"
# Substrings of training-only tensors the package itself filters out of the state dict.
TRAINING_ONLY = ("fc_post_s", "SemanticDecoder")
# The layer of W2V-BERT 2.0 whose output NeuCodec reads (``hidden_states[16]``).
SEMANTIC_LAYERS_USED = 16
# Weight-norm pairs: legacy ``weight_g``/``weight_v`` or torch parametrization names.
_WEIGHT_NORM_PAIR = re.compile(r"^(?P<prefix>.+)\.(?:weight_g|parametrizations\.weight\.original0)$")
# Transformers-layout W2V-BERT keys may carry the task models' base prefix.
_SEMANTIC_PREFIX = "wav2vec2_bert."


def is_original_neucodec(folder: Path) -> bool:
    """True if ``folder`` holds ``pytorch_model.bin`` and no Transformers ``config.json``."""
    folder = Path(folder)
    if not (folder / ORIGINAL_WEIGHTS_NAME).is_file():
        return False
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        return True
    try:
        values = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(values, dict) and "model_type" not in values


def _fold_decoder_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold every weight-norm pair under ``generator.`` into ``<prefix>.weight``."""
    folded = dict(state)
    for key in list(state):
        match = _WEIGHT_NORM_PAIR.match(key)
        if match is None or not key.startswith("generator."):
            continue
        prefix = match.group("prefix")
        v_key = (
            f"{prefix}.weight_v"
            if key.endswith("weight_g")
            else f"{prefix}.parametrizations.weight.original1"
        )
        if v_key not in state:
            raise CheckpointError(f"{key} has no matching {v_key}")
        folded[f"{prefix}.weight"] = fold_weight_norm(state[key], state[v_key], dim=0)
        del folded[key], folded[v_key]
    return folded


def _semantic_config(values: dict[str, Any], num_layers: int, source: str) -> Wav2Vec2BertConfig:
    try:
        config = Wav2Vec2BertConfig.from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} is not a Wav2Vec2-BERT config: {exc}") from exc
    if config.num_hidden_layers < num_layers:
        raise CheckpointError(
            f"{source} has {config.num_hidden_layers} layers; NeuCodec reads the output of layer {num_layers}"
        )
    config.num_hidden_layers = num_layers
    return config


def load_semantic_model(
    semantic_model: str | os.PathLike[str], num_layers: int, **hub_kwargs: Any
) -> tuple[Wav2Vec2BertConfig, dict[str, torch.Tensor]]:
    """(config cut to ``num_layers``, state) of a Transformers-layout Wav2Vec2-BERT (hub id or folder).

    The state keeps every tensor, keys without any ``wav2vec2_bert.`` prefix; the mapping
    table drops the layers past ``num_layers`` and rejects anything else it does not use.
    """
    folder = resolve_checkpoint(semantic_model, **hub_kwargs)
    config_path = folder / CONFIG_NAME
    try:
        values = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"semantic model {semantic_model}: cannot read {config_path}: {exc}") from exc
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object")
    config = _semantic_config(values, num_layers, str(config_path))
    state = load_safetensors_folder(folder)
    return config, {key.removeprefix(_SEMANTIC_PREFIX): value for key, value in state.items()}


def convert_original_neucodec_state(
    state: dict[str, torch.Tensor],
    config: NeuCodecConfig,
    semantic_state: dict[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """Map an original NeuCodec state dict (+ the W2V-BERT state) onto the Transformers layout.

    ``semantic_state`` None (a decoder-only load) stands in placeholders on the meta
    device for the semantic encoder, whose tensors the caller then drops.
    """
    kept = {key: value for key, value in state.items() if not any(name in key for name in TRAINING_ONLY)}
    stray = sorted(key for key in kept if key.startswith("semantic_model."))
    if stray:
        raise CheckpointError(
            f"original NeuCodec state dict holds semantic-model tensors ({stray[:3]}...); the "
            "package's layout has none (they come from semantic_model=)"
        )
    # The package's SnakeBeta names its second parameter ``beta`` (xcodec2 0.1.5's, whose
    # table this reuses, says ``bias``); found by tests/test_compat.py on the package's own state.
    kept = {re.sub(r"\.act\.beta$", ".act.bias", key): value for key, value in kept.items()}
    kept = _fold_decoder_weight_norm(kept)
    if semantic_state is None:
        from xcodec.semantic.w2v_bert import Wav2Vec2BertEncoder

        with torch.device("meta"):
            semantic_state = Wav2Vec2BertEncoder(config.semantic_model_config).state_dict()
    kept.update({f"semantic_model.{key}": value for key, value in semantic_state.items()})
    return convert_original_state(kept, config)


def load_original_neucodec_state(
    folder: Path,
    *,
    config: NeuCodecConfig | None = None,
    semantic_model: str | os.PathLike[str] | None = DEFAULT_SEMANTIC_MODEL,
    hub_kwargs: dict[str, Any] | None = None,
) -> tuple[NeuCodecConfig, dict[str, torch.Tensor]]:
    """Read an original-layout folder; return its config and state in the Transformers layout.

    config: the model's sizes; None means the published ones (what the package hard-codes),
        with the semantic model's own config cut to 16 layers.
    semantic_model: hub id or local folder of the Wav2Vec2-BERT weights; None skips them
        (decoder-only loads; the semantic tensors are then meta placeholders).
    """
    folder = Path(folder)
    weights = folder / ORIGINAL_WEIGHTS_NAME
    semantic_state = None
    semantic_config = None
    if semantic_model is not None:
        num_layers = (
            SEMANTIC_LAYERS_USED if config is None else config.semantic_model_config.num_hidden_layers
        )
        semantic_config, semantic_state = load_semantic_model(
            semantic_model, num_layers, **(hub_kwargs or {})
        )
    if config is None:
        try:
            config = (
                NeuCodecConfig()
                if semantic_config is None
                else NeuCodecConfig(
                    semantic_model_config=semantic_config,
                    quantization_dim=NeuCodecConfig().hidden_size + semantic_config.hidden_size,
                )
            )
        except ConfigError as exc:
            raise CheckpointError(f"semantic model {semantic_model}: {exc}") from exc
    elif (
        semantic_config is not None
        and semantic_config.hidden_size != config.semantic_model_config.hidden_size
    ):
        raise CheckpointError(
            f"semantic model {semantic_model} has width {semantic_config.hidden_size}; the config "
            f"expects {config.semantic_model_config.hidden_size}"
        )
    state = load_pickle_state_dict(weights)
    try:
        return config, convert_original_neucodec_state(state, config, semantic_state)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
