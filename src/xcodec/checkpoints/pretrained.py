"""The ``from_pretrained`` every codec shares: resolve the checkpoint, place it, load it.

Each codec's loader (``load_xcodec2``, ``load_neucodec``, ``load_xcodec``) builds its
model from a local folder; this module adds what is common: hub resolution, the
``device_map``/``dtype`` arguments (:mod:`xcodec.placement`) and the checkpoint's
``preprocessor_config.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from xcodec.base import CodecModel
from xcodec.checkpoints.common import resolve_checkpoint
from xcodec.features import PREPROCESSOR_CONFIG_NAME
from xcodec.placement import DeviceMap, DtypeArg, resolve_placement

__all__ = ["load_pretrained"]

M = TypeVar("M", bound=CodecModel)


class _Preprocessor(Protocol):
    @classmethod
    def from_pretrained(cls, id_or_path: str | os.PathLike[str]) -> Any: ...


def load_pretrained(
    loader: Callable[..., M],
    id_or_path: str | os.PathLike[str],
    *,
    preprocessor: type[_Preprocessor] | None = None,
    device: torch.device | str | None = None,
    device_map: DeviceMap = None,
    dtype: DtypeArg = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    parts: str = "all",
    **model_kwargs: Any,
) -> M:
    """``loader(path, device=, dtype=, parts=, hub_kwargs=, **model_kwargs)`` on a resolved checkpoint.

    preprocessor: the feature-extractor class whose ``preprocessor_config.json`` (when the
    checkpoint has one) becomes ``model.preprocessor``, the settings the model computes
    its own features with.
    """
    hub_kwargs: dict[str, Any] = {
        "cache_dir": cache_dir,
        "local_files_only": local_files_only,
        "token": token,
    }
    path = resolve_checkpoint(
        id_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    target_device, target_dtype = resolve_placement(path, device_map=device_map, device=device, dtype=dtype)
    model = loader(
        path, device=target_device, dtype=target_dtype, parts=parts, hub_kwargs=hub_kwargs, **model_kwargs
    )
    if preprocessor is not None and Path(path, PREPROCESSOR_CONFIG_NAME).is_file():
        # Only the codecs with a preprocessor attribute (X-Codec2, NeuCodec) pass one.
        model.preprocessor = preprocessor.from_pretrained(path)
    return model
