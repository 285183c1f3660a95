"""X-Codec (v1) checkpoints: the Transformers layout and the original ``zhenye234/xcodec`` layout.

Transformers layout (``hf-audio/xcodec-*``): ``config.json`` (model_type "xcodec") and
``model.safetensors`` (or shards). Keys equal ours except weight norm, which is folded
here wherever the file carries it (``parametrizations.weight.original0/1`` or legacy
``weight_g``/``weight_v``): the acoustic convs if saved with weight norm, the
HuBERT/WavLM positional conv always.

Original layout: the flat ``.pth`` state dict of ``SoundStream`` and the ``config.yaml``
whose ``generator.config`` holds its constructor arguments (D, ratios,
target_bandwidths, bins, sample_rate, semantic_techer). Keys are renamed through the
table in :func:`original_key_to_transformers`, weight norm is folded, and loading is
strict: an original key the table does not know, or a model key the file lacks, raises.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints.common import (
    CONFIG_NAME,
    SAFETENSORS_INDEX,
    SAFETENSORS_NAME,
    build_and_load,
    fold_pos_conv_weight_norm,
    fold_weight_norm,
    load_pickle_state_dict,
    load_safetensors_folder,
    save_transformers_layout,
    unfold_pos_conv_weight_norm,
)
from xcodec.checkpoints.pretrained import load_pretrained
from xcodec.configs.ssl import HubertConfig, WavLMConfig
from xcodec.configs.xcodec import DacConfig, XcodecConfig
from xcodec.errors import CheckpointError, ConfigError
from xcodec.models.xcodec import XcodecModel

__all__ = [
    "ORIGINAL_WEIGHT_SUFFIXES",
    "convert_original_xcodec",
    "fold_xcodec_weight_norm",
    "from_pretrained",
    "load_xcodec",
    "original_key_to_transformers",
    "original_state_to_transformers",
    "read_original_generator_config",
    "read_original_state_dict",
    "save_xcodec",
    "xcodec_config_from_original",
]

PREPROCESSOR_NAME = "preprocessor_config.json"
ORIGINAL_CONFIG_NAME = "config.yaml"
ORIGINAL_WEIGHT_SUFFIXES = (".pth", ".ckpt")
_SEMANTIC_PREFIX = "semantic_model."
# HuBERT/WavLM normalise the positional conv per kernel tap.
_POS_CONV_WEIGHT_NORM_DIM = 2
_LEGACY_WEIGHTS_NAME = "pytorch_model.bin"

# SoundStream's constructor defaults (models/soundstream_semantic.py), used for any
# argument a config.yaml leaves out. n_filters, normalize and causal are accepted and unused.
_SOUNDSTREAM_DEFAULTS: dict[str, Any] = {
    "D": 128,
    "target_bandwidths": [1, 1.5, 2, 4, 6],
    "ratios": [8, 5, 4, 2],
    "sample_rate": 16000,
    "bins": 1024,
    "semantic_techer": "hubert_base_general",
}
_SOUNDSTREAM_ARGUMENTS = {*_SOUNDSTREAM_DEFAULTS, "n_filters", "normalize", "causal"}
# The teacher each original name loads from the hub. All three are HuBERT/WavLM *base*
# models whose configs equal the Transformers defaults in every field we read.
_ORIGINAL_TEACHERS: dict[str, type[HubertConfig] | type[WavLMConfig]] = {
    "hubert_base": HubertConfig,  # facebook/hubert-base-ls960
    "hubert_base_general": HubertConfig,  # ZhenYe234/hubert_base_general_audio
    "wavlm_base_plus": WavLMConfig,  # microsoft/wavlm-base-plus
}
# The original hard-codes the semantic width and the semantic input padding.
_ORIGINAL_SEMANTIC_HIDDEN = 768
_ORIGINAL_SEMANTIC_PAD = 160


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def from_pretrained(
    model_class: type[XcodecModel], id_or_path: str | os.PathLike[str], **options: Any
) -> XcodecModel:
    """``XcodecModel.from_pretrained`` (registered in :mod:`xcodec.checkpoints`); options as there."""
    return load_pretrained(load_xcodec, id_or_path, **options)


def load_xcodec(
    path: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    original_config: Path | None = None,
    parts: str = "all",
    hub_kwargs: dict[str, Any] | None = None,
) -> XcodecModel:
    """Load an X-Codec checkpoint in either layout, in eval mode.

    ``path``: a Transformers-layout folder (``config.json`` + safetensors); an
    original-layout folder holding one ``.pth``/``.ckpt`` and ``config.yaml``; or the
    ``.pth``/``.ckpt`` file itself, with ``config.yaml`` beside it or given as
    ``original_config`` (the hub's ``ZhenYe234/xcodec`` names them ``config_hubert.yaml``...).
    ``parts`` ("encoder", "decoder") keeps only that direction's modules; the model is
    built on the meta device and the dropped modules' tensors are never assigned.
    hub_kwargs: unused (every layout holds all its weights), taken so every loader has one
    signature.
    """
    path = Path(path)
    if path.is_file() and path.suffix in ORIGINAL_WEIGHT_SUFFIXES:
        config, state = _read_original(path, original_config or path.parent / ORIGINAL_CONFIG_NAME)
    elif path.is_file() and path.name in (CONFIG_NAME, SAFETENSORS_NAME, SAFETENSORS_INDEX):
        path = path.parent
        config, state = _read_transformers(path)
    elif path.is_dir() and (path / CONFIG_NAME).exists():
        config, state = _read_transformers(path)
    elif path.is_dir():
        config, state = _read_original(
            _single_original_weights(path), original_config or path / ORIGINAL_CONFIG_NAME
        )
    else:
        raise CheckpointError(
            f"{path} is neither an X-Codec folder nor a {'/'.join(ORIGINAL_WEIGHT_SUFFIXES)} file"
        )
    return build_and_load(
        lambda: XcodecModel(config),
        fold_xcodec_weight_norm(state),
        parts=parts,
        source=str(path),
        device=device,
        dtype=dtype,
    )


def _read_transformers(folder: Path) -> tuple[XcodecConfig, dict[str, torch.Tensor]]:
    config_path = folder / CONFIG_NAME
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"cannot read {config_path}: {exc}") from exc
    if model_type != XcodecConfig.model_type:
        raise CheckpointError(f"{config_path} describes a {model_type!r} model, not 'xcodec'")
    try:
        config = XcodecConfig.from_json_file(config_path)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    if (folder / SAFETENSORS_NAME).exists() or (folder / SAFETENSORS_INDEX).exists():
        state = load_safetensors_folder(folder)
    elif (folder / _LEGACY_WEIGHTS_NAME).exists():
        state = load_pickle_state_dict(folder / _LEGACY_WEIGHTS_NAME)
    else:
        raise CheckpointError(
            f"{folder} has {CONFIG_NAME} but no {SAFETENSORS_NAME} or {_LEGACY_WEIGHTS_NAME}"
        )
    return config, state


def fold_xcodec_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold every weight-norm pair of an X-Codec state dict into plain ``.weight`` tensors.

    The positional conv of the semantic teacher is normalised per kernel tap (dim 2); all
    other pairs (DAC convs and transposed convs) use ``weight_norm``'s default dim 0, which
    for a ConvTranspose1d is its input-channel axis.
    """
    out = fold_pos_conv_weight_norm(state, _SEMANTIC_PREFIX)
    for g_suffix, v_suffix in ((".parametrizations.weight.original0", ".parametrizations.weight.original1"),
                               (".weight_g", ".weight_v")):  # fmt: skip
        for g_key in [key for key in out if key.endswith(g_suffix)]:
            base = g_key[: -len(g_suffix)]
            v_key = base + v_suffix
            if v_key not in out:
                raise CheckpointError(f"weight norm of {base} is incomplete: {g_key} without {v_key}")
            if base + ".weight" in out:
                raise CheckpointError(f"checkpoint holds both {base}.weight and its weight-norm form {g_key}")
            out[base + ".weight"] = fold_weight_norm(out.pop(g_key), out.pop(v_key), dim=0)
        orphans = [key for key in out if key.endswith(v_suffix)]
        if orphans:
            raise CheckpointError(f"weight norm is incomplete: {orphans[:5]} without their {g_suffix}")
    return out


# ---------------------------------------------------------------------------------------
# Original layout
# ---------------------------------------------------------------------------------------


def _single_original_weights(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix in ORIGINAL_WEIGHT_SUFFIXES and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(
            f"{folder} holds no {CONFIG_NAME} (Transformers layout) and no "
            f"{'/'.join(ORIGINAL_WEIGHT_SUFFIXES)} file (original layout)"
        )
    raise CheckpointError(
        f"{folder} holds several original checkpoints {[p.name for p in found]}; pass one of them"
    )


def _read_original(weights: Path, config_path: Path) -> tuple[XcodecConfig, dict[str, torch.Tensor]]:
    config = xcodec_config_from_original(read_original_generator_config(config_path))
    original = read_original_state_dict(weights)
    state = original_state_to_transformers(
        original, num_blocks=len(config.acoustic_model_config.downsampling_ratios)
    )
    return config, state


def read_original_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an original ``.pth``, read with ``torch.load(weights_only=True)``.

    Some published files carry ``io.BytesIO`` entries (the Transformers converter drops them
    too); allowing that one inert class lets the weights-only unpickler read the file, and
    every non-tensor value is then skipped.
    """
    with torch.serialization.safe_globals([io.BytesIO]):
        return load_pickle_state_dict(Path(path))


def read_original_generator_config(path: Path) -> dict[str, Any]:
    """The ``generator.config`` mapping of an original ``config.yaml``.

    Read with PyYAML (``yaml.safe_load``), an optional dependency of this layout only:
    ``pip install "xcodec[original]"`` (or ``pip install pyyaml``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"cannot read the original X-Codec config {path}: {exc}") from exc
    try:
        import yaml
    except ImportError as exc:
        raise CheckpointError(
            f"reading {path} (original X-Codec layout) needs PyYAML: pip install pyyaml "
            '(or pip install "xcodec[original]")'
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"cannot parse {path}: {exc}") from exc
    generator = document.get("generator") if isinstance(document, dict) else None
    kwargs = generator.get("config") if isinstance(generator, dict) else None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path} has no generator.config mapping (the SoundStream arguments)")
    return kwargs


def xcodec_config_from_original(generator_config: Mapping[str, Any]) -> XcodecConfig:
    """The :class:`XcodecConfig` equal to ``SoundStream(**generator_config)``."""
    unknown = sorted(set(generator_config) - _SOUNDSTREAM_ARGUMENTS)
    if unknown:
        raise CheckpointError(f"generator.config has arguments SoundStream does not take: {unknown}")
    kwargs = {**_SOUNDSTREAM_DEFAULTS, **generator_config}
    teacher = kwargs["semantic_techer"]
    if teacher not in _ORIGINAL_TEACHERS:
        raise CheckpointError(f"unknown semantic_techer {teacher!r}; known: {sorted(_ORIGINAL_TEACHERS)}")
    ratios = tuple(int(r) for r in kwargs["ratios"])
    if math.prod(ratios) // 2 != _ORIGINAL_SEMANTIC_PAD:
        # The original pads the semantic input by a fixed 160 samples, Transformers (and we)
        # by hop_length // 2: they agree only for a hop of 320 (every published model).
        raise CheckpointError(
            f"ratios {list(ratios)} give a hop other than 320, which the original cannot pad right"
        )
    sample_rate = int(kwargs["sample_rate"])
    acoustic = DacConfig(
        encoder_hidden_size=64,
        downsampling_ratios=ratios,
        decoder_hidden_size=1024,
        upsampling_ratios=ratios,
        hidden_size=int(kwargs["D"]),
        sampling_rate=sample_rate,
    )
    semantic = _ORIGINAL_TEACHERS[teacher]()
    assert semantic.hidden_size == _ORIGINAL_SEMANTIC_HIDDEN
    return XcodecConfig(
        target_bandwidths=tuple(kwargs["target_bandwidths"]),
        sample_rate=sample_rate,
        codebook_size=int(kwargs["bins"]),
        acoustic_model_config=acoustic,
        semantic_model_config=semantic,
    )


_RESIDUAL_UNIT_PARTS = {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}


def _map_residual_unit(rest: str) -> str | None:
    match = re.fullmatch(r"block\.([0-3])\.(.+)", rest)
    return f"{_RESIDUAL_UNIT_PARTS[match[1]]}.{match[2]}" if match else None


# Layers inside one original DAC block (``block.N`` of its Sequential) -> our names; an int
# names residual unit 1, 2 or 3 (dilation 1, 3, 9).
_ENCODER_BLOCK_PARTS: dict[int, str | int] = {0: 1, 1: 2, 2: 3, 3: "snake1", 4: "conv1"}
_DECODER_BLOCK_PARTS: dict[int, str | int] = {0: "snake1", 1: "conv_t1", 2: 1, 3: 2, 4: 3}


def _map_dac_stack(
    rest: str, num_blocks: int, container: str, block_parts: dict[int, str | int]
) -> str | None:
    """An original DAC encoder/decoder key (``<container>.N...``) -> ours, or None if unknown.

    Both stacks are one Sequential: the stem conv, ``num_blocks`` blocks, a Snake and the
    output conv; only the layers inside a block differ (``block_parts``).
    """
    match = re.fullmatch(rf"{container}\.(\d+)\.(.+)", rest)
    if not match:
        return None
    index, tail = int(match[1]), match[2]
    outer = {0: "conv1", num_blocks + 1: "snake1", num_blocks + 2: "conv2"}
    if index in outer:
        return f"{outer[index]}.{tail}"
    if index > num_blocks + 2:
        return None
    inner = re.fullmatch(r"block\.(\d)\.(.+)", tail)
    part = block_parts.get(int(inner[1])) if inner else None
    if inner is None or part is None:
        return None
    block = f"block.{index - 1}"
    if isinstance(part, int):
        unit = _map_residual_unit(inner[2])
        return f"{block}.res_unit{part}.{unit}" if unit else None
    return f"{block}.{part}.{inner[2]}"


def _map_semantic_conv(rest: str) -> str:
    # The original wraps each nn.Conv1d (and ConvTranspose1d) in a module holding it as
    # `.conv` (`.deconv`), except the 1x1 conv2 of the residual units.
    return re.sub(r"\.(?:conv|deconv)\.(weight|bias)$", r".\1", "." + rest)[1:]


_LINEAR_NAMES = {"fc_prior": "fc", "fc_post1": "fc1", "fc_post2": "fc2"}


def original_key_to_transformers(key: str, num_blocks: int = 4) -> str | None:
    """Our (= Transformers') name of an original ``SoundStream`` state-dict key, or None if unknown.

    ``num_blocks`` is the number of DAC ratios. Weight-norm suffixes (``weight_g``/``weight_v``)
    are kept; folding them is a separate step.
    """
    prefix, _, rest = key.partition(".")
    mapped: str | None
    if prefix == "encoder":
        mapped = _map_dac_stack(rest, num_blocks, "block", _ENCODER_BLOCK_PARTS)
        return f"acoustic_encoder.{mapped}" if mapped else None
    if prefix == "decoder_2":
        mapped = _map_dac_stack(rest, num_blocks, "model", _DECODER_BLOCK_PARTS)
        return f"acoustic_decoder.{mapped}" if mapped else None
    if prefix in ("encoder_semantic", "decoder_semantic"):
        return f"{prefix}.{_map_semantic_conv(rest)}"
    if prefix in _LINEAR_NAMES:
        return f"{_LINEAR_NAMES[prefix]}.{rest}"
    if prefix == "semantic_model":
        return key
    match = re.fullmatch(
        r"quantizer\.vq\.layers\.(\d+)\._codebook\.(inited|cluster_size|embed|embed_avg)", key
    )
    if match:
        return f"quantizer.quantizers.{match[1]}.codebook.{match[2]}"
    return None


def original_state_to_transformers(
    original: Mapping[str, torch.Tensor], *, num_blocks: int = 4
) -> dict[str, torch.Tensor]:
    """Rename an original state dict to our keys (weight norm still unfolded).

    Raises :class:`CheckpointError` naming every key the table does not know, and for a
    codebook whose ``inited`` flag is not 1: the original ``encode`` would run k-means on
    the input for such a codebook, so its ``embed`` is not a trained codebook.
    """
    state: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in original.items():
        mapped = original_key_to_transformers(key, num_blocks)
        if mapped is None:
            unknown.append(key)
        else:
            state[mapped] = value
    if unknown:
        raise CheckpointError(
            f"original X-Codec checkpoint has keys with no known place ({len(unknown)}): {unknown[:20]}"
        )
    uninitialised = [
        key
        for key, value in state.items()
        if key.endswith(".codebook.inited") and not bool((value == 1).all())
    ]
    if uninitialised:
        raise CheckpointError(
            f"codebooks never initialised (inited != 1), not a trained checkpoint: {uninitialised}"
        )
    return state


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------


def save_xcodec(model: XcodecModel, folder: Path) -> None:
    """Write the Transformers layout: ``config.json``, ``model.safetensors``, ``preprocessor_config.json``.

    ``transformers.XcodecModel.from_pretrained(folder)`` loads it with no missing or
    unexpected key: the acoustic convs stay plain (as in ``hf-audio/xcodec-*``) and the
    positional conv gets back the weight-norm parametrization Transformers builds.
    """
    state = unfold_pos_conv_weight_norm(model.state_dict(), _SEMANTIC_PREFIX)
    g_key = _SEMANTIC_PREFIX + "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
    if g_key in state:
        # g = ||w|| from the very kernel that folds it again, so g / ||v|| is exactly 1 and
        # load(save(model)) is bit-exact (a norm computed another way can differ by an ulp).
        v = state[g_key.replace("original0", "original1")]
        state[g_key] = _weight_norm_magnitude(v, dim=_POS_CONV_WEIGHT_NORM_DIM)
    preprocessor = json.dumps(preprocessor_config(model.config), indent=2, sort_keys=True) + "\n"
    save_transformers_layout(
        model,
        folder,
        state=state,
        architecture="XcodecModel",
        write_preprocessor=lambda folder: (folder / PREPROCESSOR_NAME).write_text(preprocessor),
    )


def _weight_norm_magnitude(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """``g`` with ``fold_weight_norm(g, weight, dim)`` equal to ``weight`` bit for bit."""
    shape = [1] * weight.dim()
    shape[dim] = weight.shape[dim]
    if dim in (0, weight.dim() - 1):
        # torch._weight_norm uses this fused kernel for these dims; it returns the norms it divides by.
        _, norms = torch._weight_norm_interface(weight, torch.ones(shape, dtype=weight.dtype), dim)
        return norms.reshape(shape).to(weight.dtype)
    return torch.norm_except_dim(weight, 2, dim)


def preprocessor_config(config: XcodecConfig) -> dict[str, Any]:
    """The ``DacFeatureExtractor`` settings the hub's X-Codec repositories ship."""
    return {
        "feature_extractor_type": "DacFeatureExtractor",
        "feature_size": 1,
        "hop_length": config.hop_length,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": True,
        "sampling_rate": config.sample_rate,
    }


def convert_original_xcodec(src: Path, dst: Path, *, original_config: Path | None = None) -> XcodecModel:
    """Convert an original-layout checkpoint (folder or ``.pth``) to the Transformers layout in ``dst``."""
    model = load_xcodec(Path(src), original_config=original_config)
    save_xcodec(model, Path(dst))
    return model
