"""X-Codec2 checkpoints in the ORIGINAL layout (PyPI ``xcodec2``, hub ``HKUSTAudio/xcodec2``).

That layout is what ``XCodec2Model.save_pretrained`` of the original package wrote:

* ``config.json`` of its ``BigCodecConfig``: ``semantic_hidden_size``,
  ``codec_encoder_hidden_size``, ``codec_decoder_hidden_size``, ``use_vocos``. Every other
  size is hard-coded in the original code (they equal the defaults of our
  :class:`~xcodec.configs.xcodec2.Xcodec2Config`);
* ``model.safetensors`` with the top-level prefixes ``semantic_model.`` (all 24 layers of
  W2V-BERT 2.0), ``SemanticEncoder_module.``, ``CodecEnc.`` (weight-normed convolutions),
  ``fc_prior.``, ``generator.`` (FSQ projections + Vocos decoder) and ``fc_post_a.``.

:func:`convert_original_state` maps it onto the Transformers layout (= our native keys)
through an explicit table built from the config. Reshaping done on the way:

* W2V-BERT layers past the 16 X-Codec2 reads (``hidden_states[16]``) are dropped;
* weight norm is folded (``weight_g``/``weight_v`` as the hub file names them, or
  ``parametrizations.weight.original0/1`` as the 0.1.5 code names them);
* the fused ``c_attn`` projection is split into q/k/v, and the rows of q and k are
  reordered within each head from torchtune's interleaved rotary pairs ``(2i, 2i+1)`` to
  the rotate-half pairs ``(i, i + head_dim/2)`` Transformers uses (what Transformers'
  own conversion does; the converted tensors then equal ``HKUSTAudio/xcodec2-hf``'s);
* persistent buffers the original saved (anti-aliasing filters, the ISTFT window) are
  recomputed from the config, so they are consumed after a shape check, not copied.

Quirk: the rotary embedding of the original decoder is applied over the HEADS axis (its
q/k are ``(batch, heads, time, head_dim)`` but torchtune expects ``(batch, seq, heads,
head_dim)``), so it rotates q and k of one head alike and cannot change any attention
score. Transformers and we reproduce the same rotation; the reordering above keeps the
computation identical, not just equivalent. Pinned by
``tests/test_xcodec2_original.py::test_original_rotary_runs_over_heads_and_is_inert``.

Small test checkpoints: the original code cannot be configured smaller, so a
``config.json`` may also carry :class:`Xcodec2Config` field names at top level (the
original package ignores unknown keys); they override the hard-coded sizes. The hub
file has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xcodec.checkpoints.common import (
    CONFIG_NAME,
    SAFETENSORS_INDEX,
    SAFETENSORS_NAME,
    check_conversion,
    fold_weight_norm,
    load_safetensors_folder,
    save_safetensors_folder,
)
from xcodec.configs.base import ConfigError
from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.errors import CheckpointError

__all__ = [
    "convert_original_state",
    "convert_original_xcodec2",
    "is_original_xcodec2",
    "load_original_xcodec2_state",
    "original_config_to_xcodec2",
]

# Keys of the original BigCodecConfig; a Transformers-layout config has none of them.
_BIGCODEC_KEYS = (
    "semantic_hidden_size",
    "codec_encoder_hidden_size",
    "codec_decoder_hidden_size",
    "use_vocos",
)
_ORIGINAL_PREFIXES = (
    "CodecEnc.",
    "generator.",
    "SemanticEncoder_module.",
    "fc_prior.",
    "fc_post_a.",
    "semantic_model.",
)
# The layer of W2V-BERT 2.0 whose output the original reads (`hidden_states[16]`).
_SEMANTIC_LAYERS_USED = 16
# Dilations of the three residual units in every acoustic encoder block (hard-coded in both codes).
_RESIDUAL_UNITS = 3
# Kernel of the anti-aliasing filters of every activation (alias_free_torch, up and down).
_FILTER_SHAPE = (1, 1, 12)


# --------------------------------------------------------------------------- detection


def _safetensors_keys(folder: Path) -> list[str]:
    single = folder / SAFETENSORS_NAME
    if single.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(single), framework="pt") as handle:
                return list(handle.keys())
        except (SafetensorError, OSError):  # an unreadable file is reported by the loader that reads it
            return []
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        try:
            return list(json.loads(index.read_text()).get("weight_map", {}))
        except (OSError, json.JSONDecodeError, AttributeError):
            return []
    return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return values if isinstance(values, dict) else None


def is_original_xcodec2(folder: Path) -> bool:
    """True if ``folder`` holds an X-Codec2 checkpoint in the original (PyPI ``xcodec2``) layout.

    Decided by the tensor names when a safetensors file is there (a key starting with
    ``CodecEnc.``), else by ``config.json``: BigCodecConfig keys and no
    ``semantic_model_config`` (which every Transformers-layout config has).
    """
    folder = Path(folder)
    keys = _safetensors_keys(folder)
    if keys:
        return any(key.startswith("CodecEnc.") for key in keys)
    values = _read_json(folder / CONFIG_NAME)
    if values is None:
        return False
    return any(key in values for key in _BIGCODEC_KEYS) and "semantic_model_config" not in values


# --------------------------------------------------------------------------- config


def original_config_to_xcodec2(values: dict[str, Any]) -> Xcodec2Config:
    """The :class:`Xcodec2Config` of an original ``config.json`` (BigCodecConfig keys).

    ``codec_decoder_hidden_size`` becomes ``hidden_size``; ``semantic_hidden_size`` the
    width of the W2V-BERT encoder (the original builds all 24 layers of
    ``facebook/w2v-bert-2.0``, width 1024, runs them all and reads ``hidden_states[16]``,
    the output of layer 16: we keep the first 16 layers only). The original
    feeds the acoustic encoder's output (``codec_encoder_hidden_size``, ignored by its
    constructor, which hard-codes 1024) into the same fused layer as the decoder width, so
    the two must agree. Keys naming Xcodec2Config fields override the hard-coded sizes
    (small test checkpoints only).
    """
    values = dict(values)
    if values.get("use_vocos", True) is not True:
        raise ConfigError("use_vocos=false: the original X-Codec2 code only builds the Vocos decoder")
    overrides = {key: values[key] for key in _xcodec2_field_names() if key in values}
    hidden_size = int(values.get("codec_decoder_hidden_size", overrides.get("hidden_size", 1024)))
    encoder_output = int(values.get("codec_encoder_hidden_size", hidden_size))
    if encoder_output != hidden_size:
        raise ConfigError(
            f"codec_encoder_hidden_size ({encoder_output}) differs from codec_decoder_hidden_size "
            f"({hidden_size}); X-Codec2 ties both to one hidden size"
        )
    semantic = dict(overrides.pop("semantic_model_config", None) or {})
    semantic.setdefault("num_hidden_layers", _SEMANTIC_LAYERS_USED)
    if "semantic_hidden_size" in values:
        semantic_width = int(values["semantic_hidden_size"])
        if semantic.setdefault("hidden_size", semantic_width) != semantic_width:
            raise ConfigError(
                f"semantic_hidden_size ({semantic_width}) differs from the semantic model's width "
                f"({semantic['hidden_size']})"
            )
    semantic.pop("model_type", None)
    config_values: dict[str, Any] = {
        **overrides,
        "hidden_size": hidden_size,
        "semantic_model_config": semantic,
    }
    if "quantization_dim" not in overrides:
        # The original hard-codes vq_dim=2048 = 1024 + 1024; in general it is the concat width.
        config_values["quantization_dim"] = hidden_size + int(semantic.get("hidden_size", 1024))
    try:
        return Xcodec2Config.from_dict(config_values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"original X-Codec2 config does not describe a buildable model: {exc}") from exc


def _xcodec2_field_names() -> list[str]:
    import dataclasses

    return [field.name for field in dataclasses.fields(Xcodec2Config) if field.name != "extra"]


# --------------------------------------------------------------------------- mapping table


@dataclass(frozen=True)
class _Rule:
    """One entry of the mapping table: original ``sources`` -> Transformers ``targets``.

    kind: "copy" (one tensor renamed), "weight_norm" (sources = the (g, v) pair, target
    ``.weight``), "qkv" (fused projection -> q, k, v), "constant" (a recomputed buffer:
    checked, not copied), "drop" (a tensor X-Codec2 never reads).
    """

    kind: str
    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    shape: tuple[int, ...] | None = None


def _copy(source: str, target: str) -> _Rule:
    return _Rule("copy", (source,), (target,))


def _linear(source: str, target: str, *, bias: bool = True) -> Iterator[_Rule]:
    yield _copy(f"{source}.weight", f"{target}.weight")
    if bias:
        yield _copy(f"{source}.bias", f"{target}.bias")


def _weight_normed_conv(source: str, target: str) -> Iterator[_Rule]:
    yield _Rule("weight_norm", (f"{source}.weight_g", f"{source}.weight_v"), (f"{target}.weight",))
    yield _copy(f"{source}.bias", f"{target}.bias")


def _snake(source: str, target: str) -> Iterator[_Rule]:
    """An anti-aliased SnakeBeta: the original names beta ``bias``; its two filters are recomputed."""
    yield _copy(f"{source}.act.alpha", f"{target}.act.alpha")
    yield _copy(f"{source}.act.bias", f"{target}.act.beta")
    yield _Rule("constant", (f"{source}.upsample.filter",), shape=_FILTER_SHAPE)
    yield _Rule("constant", (f"{source}.downsample.lowpass.filter",), shape=_FILTER_SHAPE)


def _acoustic_encoder_rules(config: Xcodec2Config) -> Iterator[_Rule]:
    # conv_blocks = [conv, EncoderBlock per ratio]; EncoderBlock.block = [3 residual units, snake, conv];
    # ResidualUnit.block = [snake, conv k7, snake, conv k1].
    yield from _weight_normed_conv("CodecEnc.conv_blocks.0", "acoustic_encoder.conv1")
    for index in range(len(config.downsampling_ratios)):
        source = f"CodecEnc.conv_blocks.{index + 1}.block"
        target = f"acoustic_encoder.block.{index}"
        for unit in range(_RESIDUAL_UNITS):
            unit_source = f"{source}.{unit}.block"
            unit_target = f"{target}.res_unit{unit + 1}"
            yield from _snake(f"{unit_source}.0", f"{unit_target}.snake1")
            yield from _weight_normed_conv(f"{unit_source}.1", f"{unit_target}.conv1")
            yield from _snake(f"{unit_source}.2", f"{unit_target}.snake2")
            yield from _weight_normed_conv(f"{unit_source}.3", f"{unit_target}.conv2")
        yield from _snake(f"{source}.{_RESIDUAL_UNITS}", f"{target}.snake1")
        yield from _weight_normed_conv(f"{source}.{_RESIDUAL_UNITS + 1}", f"{target}.conv1")
    yield from _snake("CodecEnc.conv_final_block.0", "acoustic_encoder.snake1")
    yield from _weight_normed_conv("CodecEnc.conv_final_block.1", "acoustic_encoder.conv2")


def _semantic_adapter_rules() -> Iterator[_Rule]:
    # residual_blocks = [ReLU, conv, ReLU, conv]: the convolutions sit at 1 and 3.
    yield _copy("SemanticEncoder_module.initial_conv.weight", "semantic_adapter.conv1.weight")
    yield from _linear("SemanticEncoder_module.residual_blocks.1", "semantic_adapter.conv2")
    yield from _linear("SemanticEncoder_module.residual_blocks.3", "semantic_adapter.conv3")
    yield _copy("SemanticEncoder_module.final_conv.weight", "semantic_adapter.conv4.weight")


_W2V_BERT_LAYER_TENSORS = (
    "ffn1_layer_norm.weight",
    "ffn1_layer_norm.bias",
    "ffn1.intermediate_dense.weight",
    "ffn1.intermediate_dense.bias",
    "ffn1.output_dense.weight",
    "ffn1.output_dense.bias",
    "self_attn_layer_norm.weight",
    "self_attn_layer_norm.bias",
    "self_attn.linear_q.weight",
    "self_attn.linear_q.bias",
    "self_attn.linear_k.weight",
    "self_attn.linear_k.bias",
    "self_attn.linear_v.weight",
    "self_attn.linear_v.bias",
    "self_attn.linear_out.weight",
    "self_attn.linear_out.bias",
    "conv_module.layer_norm.weight",
    "conv_module.layer_norm.bias",
    "conv_module.pointwise_conv1.weight",
    "conv_module.depthwise_conv.weight",
    "conv_module.depthwise_layer_norm.weight",
    "conv_module.depthwise_layer_norm.bias",
    "conv_module.pointwise_conv2.weight",
    "ffn2_layer_norm.weight",
    "ffn2_layer_norm.bias",
    "ffn2.intermediate_dense.weight",
    "ffn2.intermediate_dense.bias",
    "ffn2.output_dense.weight",
    "ffn2.output_dense.bias",
    "final_layer_norm.weight",
    "final_layer_norm.bias",
)


def _semantic_encoder_rules(config: Xcodec2Config) -> Iterator[_Rule]:
    semantic = config.semantic_model_config
    if semantic.position_embeddings_type not in ("relative_key", None):
        raise ConfigError(
            f"W2V-BERT position_embeddings_type {semantic.position_embeddings_type!r} is not what "
            "X-Codec2 uses ('relative_key')"
        )
    if semantic.add_adapter:
        raise ConfigError("the W2V-BERT adapter is not part of X-Codec2")
    if semantic.mask_time_prob > 0 or semantic.mask_feature_prob > 0:
        # SpecAugment's learned mask vector: a training-time tensor that exists in both layouts.
        yield _copy("semantic_model.masked_spec_embed", "semantic_encoder.masked_spec_embed")
    yield from _linear(
        "semantic_model.feature_projection.layer_norm", "semantic_encoder.feature_projection.layer_norm"
    )
    yield from _linear(
        "semantic_model.feature_projection.projection", "semantic_encoder.feature_projection.projection"
    )
    names = list(_W2V_BERT_LAYER_TENSORS)
    if semantic.position_embeddings_type == "relative_key":
        names.append("self_attn.distance_embedding.weight")
    for layer in range(semantic.num_hidden_layers):
        for name in names:
            yield _copy(
                f"semantic_model.encoder.layers.{layer}.{name}",
                f"semantic_encoder.encoder.layers.{layer}.{name}",
            )


def _decoder_rules(config: Xcodec2Config) -> Iterator[_Rule]:
    yield from _linear("fc_post_a", "acoustic_decoder.fc")
    yield from _linear("generator.backbone.embed", "acoustic_decoder.embed")
    for net in ("prior_net", "post_net"):
        for block in range(2):
            for part in ("norm1", "conv1", "norm2", "conv2"):
                yield from _linear(
                    f"generator.backbone.{net}.{block}.{part}", f"acoustic_decoder.{net}.{block}.{part}"
                )
    for layer in range(config.num_hidden_layers):
        source = f"generator.backbone.transformers.{layer}"
        target = f"acoustic_decoder.layers.{layer}"
        yield _copy(f"{source}.att_norm.weight", f"{target}.input_layernorm.weight")
        yield _copy(f"{source}.ffn_norm.weight", f"{target}.post_attention_layernorm.weight")
        yield _Rule(
            "qkv",
            (f"{source}.att.c_attn.weight",),
            tuple(f"{target}.self_attn.{name}_proj.weight" for name in ("q", "k", "v")),
        )
        yield _copy(f"{source}.att.c_proj.weight", f"{target}.self_attn.o_proj.weight")
        yield _copy(f"{source}.mlp.fc1.weight", f"{target}.mlp.fc1.weight")
        yield _copy(f"{source}.mlp.fc2.weight", f"{target}.mlp.fc2.weight")
    yield from _linear("generator.backbone.final_layer_norm", "acoustic_decoder.norm")
    yield from _linear("generator.head.out", "acoustic_decoder.head.linear")
    yield _Rule("constant", ("generator.head.istft.window",), shape=(config.n_fft,))


def _mapping_table(config: Xcodec2Config) -> list[_Rule]:
    """Every original tensor an X-Codec2 of ``config`` holds, and where it goes."""
    rules: list[_Rule] = []
    rules += _semantic_encoder_rules(config)
    rules += _semantic_adapter_rules()
    rules += _acoustic_encoder_rules(config)
    rules += _linear("fc_prior", "fc_encoder")
    rules += _linear("generator.quantizer.project_in", "quantizer.project_in")
    rules += _linear("generator.quantizer.project_out", "quantizer.project_out")
    rules += _decoder_rules(config)
    return rules


# --------------------------------------------------------------------------- conversion

_UNUSED_SEMANTIC_LAYER = re.compile(r"^semantic_model\.encoder\.layers\.(\d+)\.")


def _rotary_pairs_to_halves(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder the output rows of a q or k projection, head by head: (2i, 2i+1) -> (i, i + d/2).

    torchtune rotates adjacent pairs, Transformers rotates the two halves of a head; same
    frequencies. Applied to q and k alike it leaves every dot product unchanged.
    """
    out_features, in_features = weight.shape
    head_dim = out_features // num_heads
    pairs = weight.reshape(num_heads, head_dim // 2, 2, in_features)
    return pairs.transpose(1, 2).reshape(out_features, in_features)


def _weight_norm_pair(state: dict[str, torch.Tensor], g_key: str, v_key: str) -> tuple[str, str] | None:
    """The (g, v) key names present in ``state``: legacy ``weight_g/v`` or parametrization names."""
    if g_key in state and v_key in state:
        return g_key, v_key
    prefix = g_key.removesuffix(".weight_g")
    new_g = f"{prefix}.parametrizations.weight.original0"
    new_v = f"{prefix}.parametrizations.weight.original1"
    if new_g in state and new_v in state:
        return new_g, new_v
    return None


def convert_original_state(state: dict[str, torch.Tensor], config: Xcodec2Config) -> dict[str, torch.Tensor]:
    """Map an original-layout state dict onto the Transformers layout of ``config``.

    Strict: an original tensor the table does not consume, or a table entry whose tensor
    is missing, raises :class:`CheckpointError` naming the keys. W2V-BERT layers at or past
    ``semantic_model_config.num_hidden_layers`` are the only tensors dropped.
    """
    consumed: set[str] = set()
    missing: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    num_heads = config.num_attention_heads
    hidden_size = config.hidden_size

    def take(key: str) -> torch.Tensor | None:
        if key not in state:
            missing.append(key)
            return None
        consumed.add(key)
        return state[key]

    handlers: dict[str, Callable[[_Rule], None]] = {}

    def copy(rule: _Rule) -> None:
        tensor = take(rule.sources[0])
        if tensor is not None:
            converted[rule.targets[0]] = tensor

    def weight_norm(rule: _Rule) -> None:
        pair = _weight_norm_pair(state, *rule.sources)
        if pair is None:
            missing.append(f"{rule.sources[0]} (or .parametrizations.weight.original0/1)")
            return
        g_key, v_key = pair
        consumed.update(pair)
        converted[rule.targets[0]] = fold_weight_norm(state[g_key], state[v_key], dim=0)

    def qkv(rule: _Rule) -> None:
        fused = take(rule.sources[0])
        if fused is None:
            return
        if tuple(fused.shape) != (3 * hidden_size, hidden_size):
            raise CheckpointError(
                f"{rule.sources[0]} has shape {tuple(fused.shape)}; a decoder of hidden size "
                f"{hidden_size} needs {(3 * hidden_size, hidden_size)}"
            )
        # c_attn's rows are "(r h d)": r = q, k, v, then heads, then head_dim.
        query, key, value = fused.chunk(3, dim=0)
        q_target, k_target, v_target = rule.targets
        converted[q_target] = _rotary_pairs_to_halves(query, num_heads)
        converted[k_target] = _rotary_pairs_to_halves(key, num_heads)
        converted[v_target] = value.clone()

    def constant(rule: _Rule) -> None:
        tensor = take(rule.sources[0])
        if tensor is not None and rule.shape is not None and tuple(tensor.shape) != rule.shape:
            raise CheckpointError(
                f"{rule.sources[0]} has shape {tuple(tensor.shape)}, expected {rule.shape} for this config"
            )

    handlers.update(copy=copy, weight_norm=weight_norm, qkv=qkv, constant=constant)
    for rule in _mapping_table(config):
        handlers[rule.kind](rule)

    kept_layers = config.semantic_model_config.num_hidden_layers
    leftover = []
    for key in state:
        if key in consumed:
            continue
        match = _UNUSED_SEMANTIC_LAYER.match(key)
        if match is not None and int(match.group(1)) >= kept_layers:
            continue  # W2V-BERT layers X-Codec2 never reads
        leftover.append(key)
    check_conversion(missing, leftover, "original X-Codec2")
    return converted


def load_original_xcodec2_state(folder: Path) -> tuple[Xcodec2Config, dict[str, torch.Tensor]]:
    """Read an original-layout folder; return its config and state in the Transformers layout."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    values = _read_json(config_path) if config_path.is_file() else {}
    if values is None:
        raise CheckpointError(f"cannot read {config_path} as a JSON object")
    try:
        config = original_config_to_xcodec2(values)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from exc
    state = load_safetensors_folder(folder)
    try:
        return config, convert_original_state(state, config)
    except CheckpointError as exc:
        raise CheckpointError(f"{folder}: {exc}") from exc


def convert_original_xcodec2(src: Path, dst: Path) -> Xcodec2Config:
    """Write the Transformers layout of ``src`` into ``dst``; return the config written.

    ``config.json`` (model_type xcodec2) and ``model.safetensors``:
    ``transformers.Xcodec2Model.from_pretrained(dst)`` and ours both load the result.
    """
    config, state = load_original_xcodec2_state(Path(src))
    dst = Path(dst)
    save_safetensors_folder(state, dst)
    config.to_json_file(dst / CONFIG_NAME)
    return config
