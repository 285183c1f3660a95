"""Where a loaded model lives: the ``device_map`` and ``dtype`` arguments of ``from_pretrained``.

Transformers' ``from_pretrained(..., device_map="auto", dtype="auto")`` is what the
published usage examples call, so every model class and :class:`~xcodec.auto.AutoModel`
accept the same values and resolve them here, once:

``device_map``
    None (stay where loading put the weights: the CPU), ``"auto"`` (CUDA if available,
    else the CPU), a device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``), a GPU index, or a
    ``torch.device``. A codec is small enough for one device, so the per-module dict form
    (``{"encoder": 0, ...}``) is refused with a clear error instead of being half-honoured.
``dtype``
    None (float32, the dtype the modules are built in), ``"auto"`` (the dtype the
    checkpoint's ``config.json`` states under ``dtype`` or, in older files,
    ``torch_dtype``; float32 where it states none), a name (``"bfloat16"``,
    ``"torch.float16"``) or a floating ``torch.dtype``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from xcodec.checkpoints.common import CONFIG_NAME
from xcodec.errors import XcodecError

__all__ = ["DeviceMap", "DtypeArg", "PlacementError", "resolve_device", "resolve_dtype", "resolve_placement"]

DeviceMap = str | int | torch.device | None
DtypeArg = str | torch.dtype | None

# The dtype ``"auto"`` falls back to where a checkpoint does not state one (Transformers does too).
DEFAULT_DTYPE = torch.float32


class PlacementError(XcodecError, ValueError):
    """A ``device``, ``device_map`` or ``dtype`` argument that cannot be honoured."""


def resolve_device(
    device_map: object = None, device: str | torch.device | None = None
) -> torch.device | None:
    """The one device a model goes to, or None to leave it where loading put it (the CPU).

    ``device`` is this package's older spelling of the same thing; passing both is allowed
    only when they agree.
    """
    from_map = _device_from_map(device_map)
    from_device = None if device is None else _parse_device(device, "device")
    if from_map is not None and from_device is not None and from_map != from_device:
        raise PlacementError(
            f"device={str(from_device)!r} and device_map={str(device_map)!r} disagree; pass one of them"
        )
    target = from_map if from_map is not None else from_device
    if target is not None and target.type == "cuda" and not torch.cuda.is_available():
        raise PlacementError(
            f"the model was asked for {str(target)!r}, but CUDA is not available on this machine "
            "(use device_map='auto' to fall back to the CPU)"
        )
    return target


def _device_from_map(device_map: object) -> torch.device | None:
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        raise PlacementError(
            "device_map as a dict (a device per module) is not supported: a codec is loaded whole "
            "onto one device; pass device_map='auto', 'cpu', 'cuda', 'cuda:N' or a torch.device"
        )
    if device_map == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(device_map, (str, int, torch.device)) and not isinstance(device_map, bool):
        return _parse_device(device_map, "device_map")
    raise PlacementError(
        f"device_map must be None, 'auto', a device name, a GPU index or a torch.device, "
        f"got {type(device_map).__name__} {device_map!r}"
    )


def _parse_device(value: str | int | torch.device, argument: str) -> torch.device:
    if isinstance(value, torch.device):
        return value
    if isinstance(value, int):
        # A GPU index, as Transformers reads an integer device_map.
        return torch.device("cuda", value)
    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise PlacementError(f"{argument}={value!r} is not a device ({exc})") from exc


def resolve_dtype(dtype: DtypeArg, checkpoint: Path | None = None) -> torch.dtype | None:
    """The floating dtype the model's parameters get, or None to keep float32.

    checkpoint: the local checkpoint (folder, ``config.json``, or a weights file next to
    it), read only for ``dtype="auto"``.
    """
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return _check_floating(dtype, repr(dtype))
    if not isinstance(dtype, str):
        raise PlacementError(
            f"dtype must be None, 'auto', a name or a torch.dtype, got {type(dtype).__name__}"
        )
    if dtype == "auto":
        stated = _stated_dtype(checkpoint)
        return DEFAULT_DTYPE if stated is None else stated
    return _dtype_from_name(dtype, "dtype")


def _dtype_from_name(name: str, source: str) -> torch.dtype:
    candidate = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(candidate, torch.dtype):
        raise PlacementError(
            f"{source}={name!r} is not a torch dtype (try 'float32', 'bfloat16' or 'float16')"
        )
    return _check_floating(candidate, f"{source}={name!r}")


def _check_floating(dtype: torch.dtype, source: str) -> torch.dtype:
    if not dtype.is_floating_point:
        raise PlacementError(f"{source}: model weights need a floating dtype, got {dtype}")
    return dtype


def _stated_dtype(checkpoint: Path | None) -> torch.dtype | None:
    """The dtype a checkpoint's ``config.json`` states, or None (no config, or none stated)."""
    if checkpoint is None:
        return None
    checkpoint = Path(checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        return None  # original layouts (config.yaml, or weights alone) state no dtype
    try:
        values = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlacementError(f"dtype='auto' could not read {config_path}: {exc}") from exc
    if not isinstance(values, dict):
        return None
    # Transformers 5 writes ``dtype``; files written by Transformers 4 say ``torch_dtype``.
    stated = values.get("dtype") or values.get("torch_dtype")
    if stated is None:
        return None
    if not isinstance(stated, str):
        raise PlacementError(f"{config_path} states dtype {stated!r}, which is not a dtype name")
    return _dtype_from_name(stated, f"{config_path} dtype")


def resolve_placement(
    checkpoint: Path | None,
    *,
    device_map: object = None,
    device: str | torch.device | None = None,
    dtype: DtypeArg = None,
) -> tuple[torch.device | None, torch.dtype | None]:
    """``(device, dtype)`` for ``from_pretrained``; None in either means "leave as loaded"."""
    return resolve_device(device_map, device), resolve_dtype(dtype, checkpoint)
