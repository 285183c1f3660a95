"""Read and write DistillNeuCodec checkpoints (``neuphonic/distill-neucodec``).

Original layout (what the hub repo and the ``neucodec`` package hold): ``pytorch_model.bin``
(a bare state dict, read with ``torch.load(weights_only=True)`` only) + ``meta.yaml``, no
config: the package hard-codes the sizes (the defaults of
:class:`~xcodec.configs.distill_neucodec.DistillNeuCodecConfig`). Its keys:

* ``codec_encoder.encoder.blocks.*``: the convolution stack, every conv and linear with
  weight norm as torch parametrizations (``parametrizations.weight.original0/1``, folded
  here); ``codec_encoder.en_encoder.*``: the local-attention transformer (and a
  zero-sized ``cache_token``, checked and dropped);
* ``SemanticEncoder_module.*``, ``fc_sq_prior.*``, ``fc_prior.*``, and the generator
  (``generator.quantizer.project_in/out``, ``generator.backbone.*``, ``generator.head.out``,
  ``fc_post_a.*``) with NeuCodec's names, mapped by X-Codec2's decoder table;
* the DistilHuBERT weights are normally NOT in the file (the package loads
  ``ntu-spml/distilhubert`` at run time): they are read from ``semantic_model=`` (hub id or
  Transformers-layout folder); ``semantic_model.*`` tensors in the file, if any, win, as
  they would in the package's non-strict ``load_state_dict``.

Strict: a tensor nothing consumes, or one the model needs and does not find, raises
:class:`~xcodec.errors.CheckpointError` naming the keys; only NeuCodec's training-only
heads (``fc_post_s*``, ``SemanticDecoder*``), should a file hold them, are dropped by name.

Our own layout (``save_distill_neucodec``): ``config.json`` (model_type
"distill_neucodec") + ``model.safetensors`` with our module names (Transformers has no
DistillNeuCodec, so no other tool reads it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints.common import (
    CONFIG_NAME,
    SAFETENSORS_INDEX,
    SAFETENSORS_NAME,
    build_and_load,
    check_conversion,
    fold_pos_conv_weight_norm,
    fold_weight_norm,
    load_pickle_state_dict,
    load_safetensors_folder,
    resolve_checkpoint,
    save_transformers_layout,
)
from xcodec.checkpoints.neucodec_original import (
    ORIGINAL_WEIGHTS_NAME,
    TRAINING_ONLY,
    _fold_decoder_weight_norm,
)
from xcodec.checkpoints.pretrained import load_pretrained
from xcodec.checkpoints.xcodec2_original import _decoder_rules, _rotary_pairs_to_halves
from xcodec.configs.base import ConfigError
from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
from xcodec.configs.ssl import HubertConfig
from xcodec.errors import CheckpointError
from xcodec.models.distill_neucodec import DistillNeuCodecModel

__all__ = [
    "DEFAULT_SEMANTIC_MODEL",
    "convert_original_distill_state",
    "from_pretrained",
    "is_original_distill_neucodec",
    "load_distill_neucodec",
    "save_distill_neucodec",
]

DEFAULT_SEMANTIC_MODEL = "ntu-spml/distilhubert"
# Keys only an original DistillNeuCodec has (NeuCodec's acoustic encoder is ``CodecEnc.``).
_DISTILL_MARKER = "codec_encoder."
_HUBERT_PREFIX = "hubert."
_PARAMETRIZED = re.compile(r"^(?P<prefix>.+)\.parametrizations\.weight\.original0$")

# Original acoustic-encoder key (after ``codec_encoder.`` and weight-norm folding) -> ours
# (after ``acoustic_encoder.``). ``{s}`` is a stage; the original interleaves stages
# (odd block indices) and their down-sampling convs (even ones, wrapped in a Sequential).
_ACOUSTIC_RULES: tuple[tuple[str, str], ...] = (
    (r"encoder\.blocks\.0\.blocks\.(\d+)\.1\.", r"front.branches.\1."),
    (r"encoder\.blocks\.0\.conv_1\.", "front.expand."),
    (r"encoder\.blocks\.0\.conv_2\.", "front.merge."),
    (r"en_encoder\.down_trans\.trans\.", "wide_transformer."),
    (r"en_encoder\.down_trans\.down_layer\.", "compress."),
    (r"en_encoder\.local_trans\.", "transformer."),
)
_UNIT = re.compile(r"^encoder\.blocks\.(\d+)\.(\d+)\.module\.(.+)$")
_DOWN = re.compile(r"^encoder\.blocks\.(\d+)\.0\.(weight|bias)$")
_FINAL = re.compile(r"^encoder\.blocks\.(\d+)\.(weight|bias)$")
_UNIT_PARTS = {"act.alpha": "alpha", "grn.gamma": "grn_gamma", "grn.beta": "grn_beta"}
# Inside a LocalTrans: dynamic_pos_bias -> position_bias; layers.l.0 = LocalMHA, layers.l.1 = FeedForward
# (nn.Sequential: 0 LayerNorm, 1 Linear in, 2 GEGLU, 3 Dropout, 4 Linear out).
_TRANSFORMER_RULES: tuple[tuple[str, str], ...] = (
    (r"\.dynamic_pos_bias\.", ".position_bias."),
    (r"\.layers\.(\d+)\.0\.", r".layers.\1.attention."),
    (r"\.layers\.(\d+)\.1\.0\.", r".layers.\1.feed_forward.norm."),
    (r"\.layers\.(\d+)\.1\.1\.", r".layers.\1.feed_forward.proj_in."),
    (r"\.layers\.(\d+)\.1\.4\.", r".layers.\1.feed_forward.proj_out."),
)


def _fold_parametrizations(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Fold every ``parametrizations.weight.original0/1`` pair under ``prefix`` into ``.weight`` (dim 0)."""
    folded = dict(state)
    for key in list(state):
        match = _PARAMETRIZED.match(key)
        if match is None or not key.startswith(prefix):
            continue
        base = match.group("prefix")
        v_key = f"{base}.parametrizations.weight.original1"
        if v_key not in state:
            raise CheckpointError(f"{key} has no matching {v_key}")
        folded[f"{base}.weight"] = fold_weight_norm(state[key], state[v_key], dim=0)
        del folded[key], folded[v_key]
    return folded


def _acoustic_key(key: str, num_stages: int) -> str | None:
    """Our ``acoustic_encoder.`` key for an original ``codec_encoder.`` key (prefix removed), or None."""
    for pattern, replacement in _ACOUSTIC_RULES:
        if re.match(pattern, key):
            renamed = re.sub(pattern, replacement, key, count=1)
            for inner, inner_replacement in _TRANSFORMER_RULES:
                renamed = re.sub(inner, inner_replacement, renamed, count=1)
            return renamed
    unit = _UNIT.match(key)
    if unit is not None:
        block, index, part = int(unit.group(1)), unit.group(2), unit.group(3)
        if block % 2 == 1:
            return f"stages.{block // 2}.units.{index}.{_UNIT_PARTS.get(part, part)}"
    down = _DOWN.match(key)
    if down is not None and int(down.group(1)) % 2 == 0 and int(down.group(1)) // 2 - 1 < num_stages - 1:
        return f"stages.{int(down.group(1)) // 2 - 1}.down.{down.group(2)}"
    final = _FINAL.match(key)
    if final is not None and int(final.group(1)) == 2 * num_stages:
        return f"conv_out.{final.group(2)}"
    return None


def _convert_generator(
    state: dict[str, torch.Tensor], config: DistillNeuCodecConfig, consumed: set[str], missing: list[str]
) -> dict[str, torch.Tensor]:
    """The quantiser and decoder: NeuCodec's keys, X-Codec2's decoder table."""
    generator = config.generator_config()
    converted: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor | None:
        if key not in state:
            missing.append(key)
            return None
        consumed.add(key)
        return state[key]

    for name in ("project_in", "project_out"):
        for tensor in ("weight", "bias"):
            value = take(f"generator.quantizer.{name}.{tensor}")
            if value is not None:
                converted[f"quantizer.{name}.{tensor}"] = value
    for rule in _decoder_rules(generator):
        if rule.kind == "copy":
            value = take(rule.sources[0])
            if value is not None:
                converted[rule.targets[0]] = value
        elif rule.kind == "qkv":
            fused = take(rule.sources[0])
            if fused is None:
                continue
            if tuple(fused.shape) != (3 * config.hidden_size, config.hidden_size):
                raise CheckpointError(
                    f"{rule.sources[0]} has shape {tuple(fused.shape)}; a decoder of hidden size "
                    f"{config.hidden_size} needs {(3 * config.hidden_size, config.hidden_size)}"
                )
            query, key, value_part = fused.chunk(3, dim=0)
            converted[rule.targets[0]] = _rotary_pairs_to_halves(query, config.num_attention_heads)
            converted[rule.targets[1]] = _rotary_pairs_to_halves(key, config.num_attention_heads)
            converted[rule.targets[2]] = value_part.clone()
        elif rule.kind == "constant":
            value = take(rule.sources[0])
            if value is not None and rule.shape is not None and tuple(value.shape) != rule.shape:
                raise CheckpointError(
                    f"{rule.sources[0]} has shape {tuple(value.shape)}, expected {rule.shape} for this config"
                )
        else:  # pragma: no cover - the decoder table has no other kinds
            raise CheckpointError(f"unexpected mapping rule {rule.kind} for {rule.sources}")
    return converted


def convert_original_distill_state(
    state: Mapping[str, torch.Tensor],
    config: DistillNeuCodecConfig,
    semantic_state: Mapping[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """Map an original DistillNeuCodec state dict (+ DistilHuBERT's) onto our module names.

    semantic_state: the Transformers ``HubertModel`` keys (positional-conv weight norm
    folded or not); ``semantic_model.*`` tensors in ``state`` take precedence; None with
    none in ``state`` puts meta placeholders there (a decoder-only load drops them).
    """
    # Training-only heads: the package loads non-strictly and never reads them (NeuCodec's
    # loader drops the same names).
    state = {key: value for key, value in state.items() if not any(name in key for name in TRAINING_ONLY)}
    state = _fold_decoder_weight_norm(_fold_parametrizations(state, "codec_encoder."))
    consumed: set[str] = set()
    missing: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    num_stages = len(config.encoder_dims)
    unmapped: list[str] = []
    for key, value in state.items():
        if key.startswith("codec_encoder."):
            inner = key.removeprefix("codec_encoder.")
            if inner == "en_encoder.cache_token":
                if value.numel():
                    raise CheckpointError(
                        f"{key} holds {value.numel()} values; only cache_size=0 models are supported"
                    )
                consumed.add(key)
                continue
            target = _acoustic_key(inner, num_stages)
            if target is None:
                unmapped.append(key)
                continue
            converted[f"acoustic_encoder.{target}"] = value
            consumed.add(key)
    renames = {
        "SemanticEncoder_module.initial_conv.weight": "semantic_adapter.conv1.weight",
        "SemanticEncoder_module.residual_blocks.1.weight": "semantic_adapter.conv2.weight",
        "SemanticEncoder_module.residual_blocks.1.bias": "semantic_adapter.conv2.bias",
        "SemanticEncoder_module.residual_blocks.3.weight": "semantic_adapter.conv3.weight",
        "SemanticEncoder_module.residual_blocks.3.bias": "semantic_adapter.conv3.bias",
        "SemanticEncoder_module.final_conv.weight": "semantic_adapter.conv4.weight",
        "fc_sq_prior.weight": "acoustic_projection.weight",
        "fc_sq_prior.bias": "acoustic_projection.bias",
        "fc_prior.weight": "fc_encoder.weight",
        "fc_prior.bias": "fc_encoder.bias",
    }
    for source, target in renames.items():
        if source in state:
            converted[target] = state[source]
            consumed.add(source)
        else:
            missing.append(source)
    converted.update(_convert_generator(dict(state), config, consumed, missing))
    in_file = {
        key.removeprefix("semantic_model."): value
        for key, value in state.items()
        if key.startswith("semantic_model.")
    }
    consumed.update(f"semantic_model.{key}" for key in in_file)
    if in_file:
        semantic_state = in_file
    if semantic_state is None:
        from xcodec.semantic.hubert import HubertEncoder

        with torch.device("meta"):
            semantic_state = HubertEncoder(config.semantic_model_config).state_dict()
    semantic_state = fold_pos_conv_weight_norm(
        {key.removeprefix(_HUBERT_PREFIX): value for key, value in semantic_state.items()}
    )
    converted.update({f"semantic_encoder.{key}": value for key, value in semantic_state.items()})
    check_conversion(missing, set(state) - consumed, "original DistillNeuCodec")
    return converted


def _state_keys(weights: Path) -> list[str]:
    try:
        # mmap: only the key names are needed, not the tensor data.
        obj = torch.load(str(weights), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return []
    return list(obj) if isinstance(obj, Mapping) else []


def is_original_distill_neucodec(folder: Path) -> bool:
    """True if ``folder`` holds an original-layout ``pytorch_model.bin`` with DistillNeuCodec's encoder keys."""
    folder = Path(folder)
    weights = folder / ORIGINAL_WEIGHTS_NAME
    if not weights.is_file():
        return False
    config_path = folder / CONFIG_NAME
    if config_path.is_file():
        try:
            values = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if not isinstance(values, dict) or "model_type" in values:
            return False
    return any(key.startswith(_DISTILL_MARKER) for key in _state_keys(weights))


def load_semantic_model(
    semantic_model: str | os.PathLike[str], **hub_kwargs: Any
) -> tuple[HubertConfig, dict[str, torch.Tensor], bool | None]:
    """(config, state, do_normalize or None) of a Transformers-layout HuBERT (hub id or folder).

    Weights from ``model.safetensors`` (or its shards), else ``pytorch_model.bin`` read with
    ``torch.load(weights_only=True)``.
    """
    folder = resolve_checkpoint(semantic_model, **hub_kwargs)
    config_path = folder / CONFIG_NAME
    try:
        values = json.loads(config_path.read_text())
        config = HubertConfig.from_dict(values)
    except (OSError, json.JSONDecodeError, ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"semantic model {semantic_model}: cannot read a HuBERT config from {config_path}: {exc}"
        ) from exc
    do_normalize = None
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file():
        try:
            do_normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False))
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise CheckpointError(f"cannot read {preprocessor}: {exc}") from exc
    if (folder / SAFETENSORS_NAME).is_file() or (folder / SAFETENSORS_INDEX).is_file():
        state = load_safetensors_folder(folder)
    elif (folder / ORIGINAL_WEIGHTS_NAME).is_file():
        # Older hub repos (ntu-spml/distilhubert among them) may hold only the pickle.
        state = load_pickle_state_dict(folder / ORIGINAL_WEIGHTS_NAME)
    else:
        raise CheckpointError(
            f"semantic model {semantic_model}: {folder} holds no {SAFETENSORS_NAME} and no {ORIGINAL_WEIGHTS_NAME}"
        )
    return config, state, do_normalize


def load_distill_neucodec(
    path: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    parts: str = "all",
    semantic_model: str | os.PathLike[str] = DEFAULT_SEMANTIC_MODEL,
    config: DistillNeuCodecConfig | None = None,
    hub_kwargs: dict[str, Any] | None = None,
) -> DistillNeuCodecModel:
    """Build a :class:`DistillNeuCodecModel` from a checkpoint folder (either layout), strictly, in eval mode.

    semantic_model: where an original-layout checkpoint's DistilHuBERT comes from (hub id
    or local folder; its config sets the semantic sizes and its preprocessor
    ``do_normalize``); not read for ``parts="decoder"`` or when the file holds the tensors.
    config: the sizes of an original-layout checkpoint other than the published ones (test
    checkpoints); our layout carries its own.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"DistillNeuCodec checkpoint {path} is not a folder")
    weights = path / ORIGINAL_WEIGHTS_NAME
    config_path = path / CONFIG_NAME
    if config_path.is_file():
        try:
            loaded = DistillNeuCodecConfig.from_dict(json.loads(config_path.read_text()))
        except (OSError, json.JSONDecodeError, ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path} does not describe a DistillNeuCodec model: {exc}") from exc
        state = load_safetensors_folder(path)
        return build_and_load(
            lambda: DistillNeuCodecModel(loaded),
            state,
            parts=parts,
            source=str(path),
            device=device,
            dtype=dtype,
        )
    if not weights.is_file():
        raise CheckpointError(
            f"{path} is not a DistillNeuCodec checkpoint: no {CONFIG_NAME} and no {ORIGINAL_WEIGHTS_NAME}"
        )
    original = load_pickle_state_dict(weights)
    semantic_state = None
    has_semantic = any(key.startswith("semantic_model.") for key in original)
    if parts != "decoder" and not has_semantic:
        kwargs = {key: value for key, value in (hub_kwargs or {}).items() if value is not None}
        semantic_config, semantic_state, do_normalize = load_semantic_model(semantic_model, **kwargs)
        if config is None:
            config = DistillNeuCodecConfig(
                semantic_model_config=semantic_config, semantic_do_normalize=bool(do_normalize)
            )
        elif semantic_config.hidden_size != config.semantic_model_config.hidden_size:
            raise CheckpointError(
                f"semantic model {semantic_model} has width {semantic_config.hidden_size}; the config "
                f"expects {config.semantic_model_config.hidden_size}"
            )
    final_config = config or DistillNeuCodecConfig()
    try:
        state = convert_original_distill_state(original, final_config, semantic_state)
    except CheckpointError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
    build: Callable[[], DistillNeuCodecModel] = lambda: DistillNeuCodecModel(final_config)  # noqa: E731
    return build_and_load(build, state, parts=parts, source=str(weights), device=device, dtype=dtype)


def from_pretrained(
    model_class: type[DistillNeuCodecModel], id_or_path: str | os.PathLike[str], **options: Any
) -> DistillNeuCodecModel:
    """``DistillNeuCodecModel.from_pretrained`` (registered in :mod:`xcodec.checkpoints`); options as
    :func:`load_distill_neucodec` (``semantic_model``, ``config``) plus the common ones."""
    return load_pretrained(load_distill_neucodec, id_or_path, **options)


def save_distill_neucodec(model: DistillNeuCodecModel, folder: Path) -> None:
    """Write ``config.json`` (model_type "distill_neucodec") and ``model.safetensors`` into ``folder``."""
    save_transformers_layout(
        model,
        folder,
        state=model.state_dict(),
        architecture="DistillNeuCodecModel",
        write_preprocessor=lambda _folder: None,
    )
