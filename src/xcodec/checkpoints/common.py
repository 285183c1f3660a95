"""Checkpoint plumbing shared by every model: find the files, read tensors, load strictly.

Model files do no I/O; this module does all of it. Loading is strict by design: a key
that is missing or left over raises :class:`~xcodec.errors.CheckpointError` with the
names, because a silently random layer is the worst bug a codec can have.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from xcodec.base import CodecModel
from xcodec.errors import CheckpointError

__all__ = [
    "SAFETENSORS_INDEX",
    "SAFETENSORS_NAME",
    "build_and_load",
    "check_conversion",
    "fold_pos_conv_weight_norm",
    "fold_weight_norm",
    "load_pickle_state_dict",
    "load_safetensors_folder",
    "load_state_dict_strict",
    "packaged_checkpoint",
    "parameters_on_meta",
    "resolve_checkpoint",
    "save_safetensors_folder",
    "save_transformers_layout",
    "unfold_pos_conv_weight_norm",
    "unfold_weight_norm",
]

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
# Files fetched from the hub for a Transformers-layout or original-layout checkpoint.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.yaml", "*.pth", "*.ckpt", "*.bin"]


# Checkpoints shipped inside the package (src/xcodec/pretrained/<name>/), found by bare
# name with no network: the offline default of scripts/main_job.sh (issue 13).
PACKAGED_CHECKPOINTS = ("xcodec2-demo", "xcodec2-demo-streaming")


def packaged_checkpoint(name: str) -> Path | None:
    """The folder of the packaged checkpoint ``name`` (e.g. "xcodec2-demo"), or None if there is none."""
    if name not in PACKAGED_CHECKPOINTS:
        return None
    folder = Path(__file__).resolve().parent.parent / "pretrained" / name
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"packaged checkpoint {name!r} is missing from this install ({folder})")
    return folder


def resolve_checkpoint(
    id_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder (or file) holding the checkpoint ``id_or_path``.

    A path that exists is returned as is; a packaged name (:data:`PACKAGED_CHECKPOINTS`)
    is the folder shipped in ``xcodec/pretrained``. Anything else is taken as a Hugging Face hub
    repo id and downloaded through ``huggingface_hub.snapshot_download`` (its cache,
    ``revision``, ``HF_HUB_OFFLINE`` and ``local_files_only`` are honoured).
    """
    path = Path(id_or_path).expanduser()
    if path.exists():
        return path
    text = str(id_or_path)
    packaged = packaged_checkpoint(text)
    if packaged is not None:
        return packaged
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep + os.sep in text:
        raise CheckpointError(f"checkpoint path {text!r} does not exist")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError("huggingface_hub is needed to download checkpoints") from exc
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=bool(local_files_only),
            allow_patterns=_HUB_PATTERNS,
            token=token,
        )
    except Exception as exc:
        raise CheckpointError(
            f"could not get {text!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "If this machine is offline, download the checkpoint elsewhere and pass its local "
            "folder instead (for example `--model /path/to/xcodec2-hf`), or set HF_HOME to a "
            "cache that already holds it."
        ) from exc
    return Path(folder)


def _read_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc} (truncated or not a safetensors file?)") from exc


def load_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors``, or every shard a ``model.safetensors.index.json`` names."""
    index = folder / SAFETENSORS_INDEX
    single = folder / SAFETENSORS_NAME
    if single.exists():
        return _read_safetensors_file(single)
    if index.exists():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read shard index {index}: {exc}") from exc
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(_read_safetensors_file(folder / shard))
        missing = sorted(set(weight_map) - set(state))
        if missing:
            raise CheckpointError(f"{index} lists tensors no shard holds: {missing[:10]}")
        return state
    raise CheckpointError(f"{folder} holds neither {SAFETENSORS_NAME} nor {SAFETENSORS_INDEX}")


def load_pickle_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.ckpt``/``.bin`` state dict with ``torch.load(weights_only=True)``.

    Lightning-style ``{"state_dict": ...}`` wrappers are unwrapped; non-tensor entries
    (some published files carry them) are dropped.
    """
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: {exc}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Return ``w = g * v / ||v||``, the norm taken over every axis except ``dim``.

    ``dim=0`` is the classic ``weight_norm`` of a Conv1d (g: (out, 1, 1)); a
    ConvTranspose1d keeps ``dim=0`` too, which there is the input-channel axis; the
    HuBERT/WavLM positional conv uses ``dim=2`` (one norm per kernel tap).
    """
    # torch's own kernel, so the folded weight equals, bit for bit, what the reference
    # recomputes in every forward pass.
    return torch._weight_norm(v, g, dim % v.dim())


def unfold_weight_norm(w: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fold_weight_norm`: ``(g, v)`` with ``v = w`` and ``g = ||w||``."""
    axes = [a for a in range(w.dim()) if a != dim % w.dim()]
    return w.norm(dim=axes, keepdim=True), w.clone()


def load_state_dict_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, assign: bool = False
) -> None:
    """Copy ``state`` into ``module``; raise naming every missing, unexpected or misshapen key.

    ``assign=True`` puts the checkpoint tensors (cast to the module's dtypes) in place of
    the module's own, so a module built with its parameters on the meta device loads
    without ever allocating random weights.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    if misshapen:
        problems.append(f"shape mismatches ({len(misshapen)}): {_preview(misshapen)}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match the model: " + "; ".join(problems))
    if assign:
        cast = {key: state[key].to(dtype=target.dtype) for key, target in own.items()}
        module.load_state_dict(cast, strict=True, assign=True)
        return
    with torch.no_grad():
        for key, target in own.items():
            target.copy_(state[key].to(dtype=target.dtype))


def check_conversion(missing: Iterable[str], leftover: Iterable[str], layout: str) -> None:
    """Raise naming the model keys a layout conversion left ``missing`` and the checkpoint keys
    it left unread (``leftover``); ``layout`` names the source ("original X-Codec2")."""
    missing, leftover = sorted(missing), sorted(leftover)
    problems = []
    if missing:
        problems.append(f"missing ({len(missing)}): {_preview(missing)}")
    if leftover:
        problems.append(f"not consumed by the mapping table ({len(leftover)}): {_preview(leftover)}")
    if problems:
        raise CheckpointError(f"{layout} state dict does not match its config: " + "; ".join(problems))


def _preview(names: Iterable[str], limit: int = 20) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def save_safetensors_folder(state: Mapping[str, torch.Tensor], folder: Path) -> None:
    """Write ``model.safetensors`` (contiguous, CPU copies) into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(folder / SAFETENSORS_NAME), metadata={"format": "pt"})


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create parameters on the meta device while building a model, so no random init runs.

    Buffers (resampling filters, FSQ tables, windows, all derived from the config) are
    still computed for real; the checkpoint then supplies every parameter (strict load with
    ``assign``). The hook is torch's own API and is removed on exit.
    """

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
        if param is None:
            return None
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    # torch's stub types the hook as returning None; returning a replacement is documented.
    handle = register_module_parameter_registration_hook(cast(Any, to_meta))
    try:
        yield
    finally:
        handle.remove()


ModelT = TypeVar("ModelT", bound=CodecModel)


def build_and_load(
    build: Callable[[], ModelT],
    state: Mapping[str, torch.Tensor],
    *,
    parts: str,
    source: str,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ModelT:
    """The one loading sequence of every codec: build on meta, drop parts, load strictly, place.

    ``build()`` runs with parameters on the meta device (no random init); the modules
    ``parts`` ("all", "encoder", "decoder") does not need are dropped and their tensors in
    ``state`` left unread; the rest loads strictly (``source`` names the checkpoint in
    errors). Returns the model in eval mode, moved to ``device``/``dtype`` when given.
    """
    with parameters_on_meta():
        model = build()
    dropped = model.drop_unused_parts(parts)
    if dropped:
        state = {key: value for key, value in state.items() if not key.startswith(dropped)}
    load_state_dict_strict(model, state, source=source, assign=True)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def save_transformers_layout(
    model: CodecModel,
    folder: Path,
    *,
    state: Mapping[str, torch.Tensor],
    architecture: str,
    write_preprocessor: Callable[[Path], object],
) -> None:
    """Write ``config.json``, ``model.safetensors`` (``state``) and the preprocessor file into ``folder``.

    Only a model loaded with every part can be saved (a half model would write a
    checkpoint that no loader accepts). Transformers leaves ``architectures`` null on a
    fresh config; it is filled with ``architecture`` as Transformers' own save does.
    """
    if model.loaded_parts != "all":
        raise CheckpointError(
            f"this model was loaded with parts={model.loaded_parts!r}; save a model loaded with parts='all'"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors_folder(state, folder)
    values = model.config.to_dict()
    if not values.get("architectures"):
        values["architectures"] = [architecture]
    (folder / CONFIG_NAME).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    write_preprocessor(folder)


# ---------------------------------------------------------------------------------------
# HuBERT / WavLM positional conv (xcodec.semantic.conv_frontend.PositionalConvEmbedding)
# ---------------------------------------------------------------------------------------

_POS_CONV = "encoder.pos_conv_embed.conv."
_POS_CONV_BATCH_NORM = "encoder.pos_conv_embed.batch_norm.weight"
# Weight norm of the positional conv keeps one norm per kernel tap.
_POS_CONV_WEIGHT_NORM_DIM = 2


def fold_pos_conv_weight_norm(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Return a copy of ``state`` with the positional conv's weight norm folded into ``...conv.weight``.

    Accepts the parametrization names (``parametrizations.weight.original0``/``original1``,
    written by current torch) and the legacy ``weight_g``/``weight_v``; both are g of
    shape (1, 1, kernel) and v of shape (hidden, hidden / groups, kernel), normalised over
    every axis but the kernel axis. A state that is already folded comes back unchanged.
    """
    out = dict(state)
    base = prefix + _POS_CONV
    pairs = [
        (base + "parametrizations.weight.original0", base + "parametrizations.weight.original1"),
        (base + "weight_g", base + "weight_v"),
    ]
    for g_key, v_key in pairs:
        if g_key not in out and v_key not in out:
            continue
        if g_key not in out or v_key not in out:
            raise CheckpointError(f"positional conv weight norm is incomplete: need both {g_key} and {v_key}")
        if base + "weight" in out:
            raise CheckpointError(f"checkpoint holds both {base}weight and its weight-norm form {g_key}")
        out[base + "weight"] = fold_weight_norm(out.pop(g_key), out.pop(v_key), dim=_POS_CONV_WEIGHT_NORM_DIM)
    return out


def unfold_pos_conv_weight_norm(
    state: Mapping[str, torch.Tensor], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`fold_pos_conv_weight_norm`: write the parametrization names Transformers loads.

    A HuBERT with ``conv_pos_batch_norm`` has a plain conv weight upstream too and is left as is.
    """
    out = dict(state)
    weight_key = prefix + _POS_CONV + "weight"
    if weight_key not in out or prefix + _POS_CONV_BATCH_NORM in out:
        return out
    g, v = unfold_weight_norm(out.pop(weight_key), dim=_POS_CONV_WEIGHT_NORM_DIM)
    out[prefix + _POS_CONV + "parametrizations.weight.original0"] = g
    out[prefix + _POS_CONV + "parametrizations.weight.original1"] = v
    return out
