"""Read and write X-Codec2 checkpoints.

Transformers layout (``HKUSTAudio/xcodec2-hf``): ``config.json`` (model_type "xcodec2")
and ``model.safetensors`` or a sharded index. Our modules carry the Transformers names
and that layout has no weight norm, so loading is an identity key map, strict.
The original layout (``HKUSTAudio/xcodec2``: ``ckpt/epoch=4-step=1400000.ckpt``) is
recognised and converted by :mod:`xcodec.checkpoints.xcodec2_original` when present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints import xcodec2_original
from xcodec.checkpoints.common import (
    CONFIG_NAME,
    build_and_load,
    load_safetensors_folder,
    save_transformers_layout,
)
from xcodec.checkpoints.pretrained import load_pretrained
from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.errors import CheckpointError, ConfigError
from xcodec.features import Xcodec2FeatureExtractor
from xcodec.models.xcodec2 import Xcodec2Model

__all__ = ["from_pretrained", "load_xcodec2", "save_xcodec2"]


def from_pretrained(
    model_class: type[Xcodec2Model], id_or_path: str | os.PathLike[str], **options: Any
) -> Xcodec2Model:
    """``Xcodec2Model.from_pretrained`` (registered in :mod:`xcodec.checkpoints`); options as there."""
    return load_pretrained(load_xcodec2, id_or_path, preprocessor=Xcodec2FeatureExtractor, **options)


def _original_layout_state(folder: Path) -> tuple[Xcodec2Config, dict[str, torch.Tensor]] | None:
    """(config, state) converted from the original X-Codec2 layout, or None if ``folder`` is not one."""
    if not xcodec2_original.is_original_xcodec2(folder):
        return None
    return xcodec2_original.load_original_xcodec2_state(folder)


def _read_config(folder: Path) -> Xcodec2Config:
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} is not an X-Codec2 checkpoint: no {CONFIG_NAME} (expected a Transformers-layout "
            "folder such as HKUSTAudio/xcodec2-hf, or the original HKUSTAudio/xcodec2 layout)"
        )
    try:
        values = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {config_path}: {exc}") from exc
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object")
    model_type = values.get("model_type")
    if model_type != Xcodec2Config.model_type:
        raise CheckpointError(
            f"{config_path} has model_type {model_type!r}; an X-Codec2 checkpoint has "
            f"{Xcodec2Config.model_type!r}"
        )
    try:
        return Xcodec2Config.from_dict(values)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path} does not describe a buildable X-Codec2 model: {exc}") from exc


def load_xcodec2(
    path: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    parts: str = "all",
    hub_kwargs: dict[str, Any] | None = None,
) -> Xcodec2Model:
    """Build an :class:`~xcodec.models.xcodec2.Xcodec2Model` from a checkpoint folder, strictly.

    Every parameter must come from the checkpoint and every tensor in it must be used;
    otherwise :class:`CheckpointError` lists the keys. The model is returned in eval mode.
    ``parts`` ("encoder", "decoder") keeps only that direction's modules: the tensors of
    the others are dropped unread by the strict check. hub_kwargs: unused (the layout
    holds everything), taken so every loader has one signature.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"X-Codec2 checkpoint {path} is not a folder")
    original = _original_layout_state(path)
    if original is not None:
        config, state = original
    else:
        config = _read_config(path)
        state = load_safetensors_folder(path)
    return build_and_load(
        lambda: Xcodec2Model(config), state, parts=parts, source=str(path), device=device, dtype=dtype
    )


def save_xcodec2(model: Xcodec2Model, folder: Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``preprocessor_config.json`` into ``folder``.

    ``transformers.Xcodec2Model.from_pretrained(folder)`` and
    ``AutoFeatureExtractor.from_pretrained(folder)`` read the result.
    """
    # The file Transformers' Xcodec2FeatureExtractor writes, so AutoFeatureExtractor finds one.
    extractor = Xcodec2FeatureExtractor(
        sampling_rate=model.config.sampling_rate, hop_length=model.config.hop_length
    )
    save_transformers_layout(
        model,
        folder,
        state=model.state_dict(),
        architecture="Xcodec2Model",
        write_preprocessor=extractor.save_pretrained,
    )
