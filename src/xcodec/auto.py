"""One entry point for both codecs: pick the model class from what a checkpoint holds.

Detection order (first match wins):
1. a folder (or hub repo) with ``config.json`` whose ``model_type`` is ``xcodec2``, ``neucodec``,
   ``distill_neucodec`` (our layout) or ``xcodec`` (the Transformers layout);
2. a ``config.json`` with the original ``xcodec2`` package's BigCodecConfig keys;
3. a folder with ``pytorch_model.bin`` and no Transformers ``config.json`` (the original
   NeuCodec layout of ``neuphonic/neucodec``; DistillNeuCodec's, ``neuphonic/distill-neucodec``,
   when its keys include ``codec_encoder.``);
4. a ``.pth``/``.ckpt`` file, or a folder holding one next to a ``config.yaml``
   (the original X-Codec layout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from xcodec.base import CodecModel
from xcodec.checkpoints.common import CONFIG_NAME, resolve_checkpoint
from xcodec.errors import CheckpointError
from xcodec.placement import DeviceMap, DtypeArg, resolve_placement

__all__ = ["AutoFeatureExtractor", "AutoModel", "checkpoint_location", "detect_codec"]

# A file that is a whole checkpoint by itself: an original X-Codec state dict.
_STATE_DICT_SUFFIXES = (".pth", ".ckpt")
# Files that are one part of a checkpoint folder: the folder is the checkpoint.
_FOLDER_FILES = (CONFIG_NAME, "pytorch_model.bin", "model.safetensors", "model.safetensors.index.json")


def checkpoint_location(path: Path) -> Path:
    """The checkpoint ``path`` names: a folder, an original X-Codec ``.pth``/``.ckpt``, or the
    folder of a file that is one part of a checkpoint (``config.json``, ``pytorch_model.bin``,
    ``model.safetensors``). Any other file raises :class:`CheckpointError` naming it."""
    if not path.is_file() or path.suffix in _STATE_DICT_SUFFIXES:
        return path
    if path.name in _FOLDER_FILES or path.suffix == ".safetensors":
        return path.parent
    raise CheckpointError(
        f"{path} is not a checkpoint: pass a checkpoint folder, its config.json, or an original "
        f"X-Codec state dict ({'/'.join(_STATE_DICT_SUFFIXES)}); a bare {path.suffix or 'extension-less'} "
        "file is not read (its layout and config cannot be known)"
    )


def detect_codec(path: Path) -> str:
    """Return ``"xcodec2"``, ``"neucodec"``, ``"distill_neucodec"`` or ``"xcodec"`` for a local checkpoint path; raise if none."""
    path = checkpoint_location(path)
    if path.is_file():
        return "xcodec"
    config_file = path / CONFIG_NAME
    if config_file.exists():
        try:
            values = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {config_file}: {exc}") from exc
        model_type = values.get("model_type") if isinstance(values, dict) else None
        if model_type in ("xcodec2", "neucodec", "distill_neucodec", "xcodec"):
            return str(model_type)
        if model_type is not None:
            raise CheckpointError(
                f"{config_file} has model_type {model_type!r}; xcodec loads 'xcodec2', 'neucodec', "
                "'distill_neucodec' and 'xcodec'"
            )
        from xcodec.checkpoints.xcodec2_original import is_original_xcodec2

        if is_original_xcodec2(path):
            return "xcodec2"
    from xcodec.checkpoints.distill_neucodec import is_original_distill_neucodec
    from xcodec.checkpoints.neucodec_original import is_original_neucodec

    if is_original_distill_neucodec(path):
        return "distill_neucodec"
    if is_original_neucodec(path):
        return "neucodec"
    if any(path.glob("*.pth")) or any(path.glob("*.ckpt")):
        return "xcodec"
    raise CheckpointError(
        f"{path} is not an X-Codec or X-Codec2 checkpoint: expected config.json (Transformers or "
        "original xcodec2 layout) or a .pth state dict with its config.yaml (original X-Codec layout)"
    )


def _model_class(kind: str) -> type[CodecModel]:
    if kind == "xcodec2":
        from xcodec.models.xcodec2 import Xcodec2Model

        return Xcodec2Model
    if kind == "neucodec":
        from xcodec.models.neucodec import NeuCodecModel

        return NeuCodecModel
    if kind == "distill_neucodec":
        from xcodec.models.distill_neucodec import DistillNeuCodecModel

        return DistillNeuCodecModel
    from xcodec.models.xcodec import XcodecModel

    return XcodecModel


class AutoModel:
    """``AutoModel.from_pretrained(id_or_path)`` returns an ``Xcodec2Model``, ``NeuCodecModel`` or ``XcodecModel``."""

    @staticmethod
    def from_pretrained(
        id_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        device_map: DeviceMap = None,
        dtype: DtypeArg = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        parts: str = "all",
        **model_kwargs: Any,
    ) -> CodecModel:
        """Load any of the codecs; ``parts`` ("all", "encoder", "decoder") as in the model classes.

        device_map, dtype: as Transformers' (``device_map="auto"``, ``dtype="auto"`` included),
        resolved here once for every model class, see :mod:`xcodec.placement`.
        model_kwargs: options of one model class, passed on (NeuCodec: ``semantic_model``).
        """
        path = resolve_checkpoint(
            id_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        path = checkpoint_location(path)
        target_device, target_dtype = resolve_placement(
            path, device_map=device_map, device=device, dtype=dtype
        )
        model_class = _model_class(detect_codec(path))
        return model_class.from_pretrained(
            path, device=target_device, dtype=target_dtype, parts=parts, **model_kwargs
        )


class AutoFeatureExtractor:
    """``AutoFeatureExtractor.from_pretrained(id_or_path)``: the extractor matching the checkpoint."""

    @staticmethod
    def from_pretrained(id_or_path: str | os.PathLike[str], **hub_kwargs: Any) -> Any:
        path = checkpoint_location(resolve_checkpoint(id_or_path, **hub_kwargs))
        from xcodec.features import NeuCodecFeatureExtractor, Xcodec2FeatureExtractor, XcodecFeatureExtractor

        kind = detect_codec(path)
        if kind == "xcodec2":
            return Xcodec2FeatureExtractor.from_pretrained(path)
        if kind == "neucodec":
            return NeuCodecFeatureExtractor.from_pretrained(path)
        if kind == "distill_neucodec":
            raise CheckpointError(
                f"{path} is a DistillNeuCodec checkpoint, which has no feature extractor: its model "
                "takes the padded waveform (DistillNeuCodecModel.pad_input) and computes the rest"
            )
        return XcodecFeatureExtractor.from_pretrained(path if path.is_dir() else path.parent)
