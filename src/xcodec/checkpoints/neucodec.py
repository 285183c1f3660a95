"""Read and write NeuCodec checkpoints.

Transformers layout: ``config.json`` (model_type "neucodec") and ``model.safetensors`` (or
a sharded index), keys equal to ours (identity map, strict). The original layout
(``pytorch_model.bin`` + ``meta.yaml``, ``neuphonic/neucodec``) is converted by
:mod:`xcodec.checkpoints.neucodec_original`, with the semantic model read from
``semantic_model``. :func:`save_neucodec` writes the Transformers layout, which
``transformers.NeuCodecModel.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints.common import (
    CONFIG_NAME,
    build_and_load,
    load_safetensors_folder,
    save_transformers_layout,
)
from xcodec.checkpoints.neucodec_original import (
    DEFAULT_SEMANTIC_MODEL,
    is_original_neucodec,
    load_original_neucodec_state,
)
from xcodec.checkpoints.pretrained import load_pretrained
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.errors import CheckpointError, ConfigError
from xcodec.features import NeuCodecFeatureExtractor
from xcodec.models.neucodec import NeuCodecModel

__all__ = ["from_pretrained", "load_neucodec", "read_neucodec_config", "save_neucodec"]


def from_pretrained(
    model_class: type[NeuCodecModel], id_or_path: str | os.PathLike[str], **options: Any
) -> NeuCodecModel:
    """``NeuCodecModel.from_pretrained`` (registered in :mod:`xcodec.checkpoints`).

    Options as there, plus ``semantic_model``: where the original layout's W2V-BERT weights
    come from (hub id or local Transformers folder, first 16 layers; default
    ``facebook/w2v-bert-2.0``; not read for ``parts="decoder"``).
    """
    return load_pretrained(load_neucodec, id_or_path, preprocessor=NeuCodecFeatureExtractor, **options)


def read_neucodec_config(folder: Path) -> NeuCodecConfig:
    """The :class:`NeuCodecConfig` of a Transformers-layout folder; errors name the file."""
    config_path = Path(folder) / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} is not a NeuCodec checkpoint: no {CONFIG_NAME} (Transformers layout) and no "
            "pytorch_model.bin (original neuphonic/neucodec layout)"
        )
    try:
        values = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {config_path}: {exc}") from exc
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object")
    if values.get("model_type") != NeuCodecConfig.model_type:
        raise CheckpointError(
            f"{config_path} has model_type {values.get('model_type')!r}; a NeuCodec checkpoint has "
            f"{NeuCodecConfig.model_type!r}"
        )
    try:
        return NeuCodecConfig.from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path} does not describe a buildable NeuCodec model: {exc}") from exc


def load_neucodec(
    path: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    parts: str = "all",
    semantic_model: str | os.PathLike[str] = DEFAULT_SEMANTIC_MODEL,
    config: NeuCodecConfig | None = None,
    hub_kwargs: dict[str, Any] | None = None,
) -> NeuCodecModel:
    """Build a :class:`~xcodec.models.neucodec.NeuCodecModel` from a checkpoint folder, strictly.

    Either layout. semantic_model: where the original layout's W2V-BERT weights come from
    (hub id or local folder; unused for the Transformers layout and for
    ``parts="decoder"``). config: sizes of an original-layout checkpoint other than the
    published ones (test checkpoints); a Transformers-layout folder carries its own.
    hub_kwargs: ``cache_dir``/``local_files_only``/``token`` for fetching ``semantic_model``.
    The model is returned in eval mode.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"NeuCodec checkpoint {path} is not a folder")
    if is_original_neucodec(path):
        kwargs = {key: value for key, value in (hub_kwargs or {}).items() if value is not None}
        config, state = load_original_neucodec_state(
            path,
            config=config,
            semantic_model=None if parts == "decoder" else semantic_model,
            hub_kwargs=kwargs,
        )
    else:
        config = read_neucodec_config(path)
        state = load_safetensors_folder(path)
    return build_and_load(
        lambda: NeuCodecModel(config), state, parts=parts, source=str(path), device=device, dtype=dtype
    )


def save_neucodec(model: NeuCodecModel, folder: Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``preprocessor_config.json`` into ``folder``.

    ``transformers.NeuCodecModel.from_pretrained(folder)`` and
    ``AutoFeatureExtractor.from_pretrained(folder)`` read the result.
    """
    extractor = NeuCodecFeatureExtractor(
        sampling_rate=model.config.input_sampling_rate, hop_length=model.config.encoder_hop_length
    )
    save_transformers_layout(
        model,
        folder,
        state=model.state_dict(),
        architecture="NeuCodecModel",
        write_preprocessor=extractor.save_pretrained,
    )
