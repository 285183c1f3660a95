"""Original X-Codec2 layout (PyPI ``xcodec2==0.1.5``) -> Transformers layout, proven against the original code.

The original model is built from its own source (tests/_xcodec2_original_harness.py), its
weights perturbed at random, saved as the hub saves it, converted by
:mod:`xcodec.checkpoints.xcodec2_original`, and loaded into ``transformers.Xcodec2Model``
(the oracle) and into our ``Xcodec2Model``. All three must give the same codes and audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary, assert_tie_share
from _oracle import require_oracle
from safetensors.torch import save_file

require_oracle("transformers")

from _xcodec2_original_harness import (  # noqa: E402
    OriginalSizes,
    TorchtuneRotary,
    build_original_model,
    legacy_weight_norm_names,
    original_encode_inputs,
    original_modules,
)

from xcodec.checkpoints.xcodec2_original import (  # noqa: E402
    convert_original_state,
    convert_original_xcodec2,
    is_original_xcodec2,
    load_original_xcodec2_state,
    original_config_to_xcodec2,
)
from xcodec.configs.base import ConfigError  # noqa: E402
from xcodec.configs.xcodec2 import Xcodec2Config  # noqa: E402
from xcodec.errors import CheckpointError  # noqa: E402

# Small enough for the default suite; 17 W2V-BERT layers so that the original's
# `hidden_states[16]` exists and one layer past it must be dropped by the conversion.
SMALL = OriginalSizes(
    encoder_ngf=4,
    hidden_size=64,
    decoder_layers=2,
    decoder_heads=4,
    semantic_hidden_size=32,
    semantic_layers=17,
    semantic_heads=2,
    semantic_intermediate_size=64,
)
AUDIO_TOLERANCE = 1e-4
TIE_MARGIN = 1e-4


def _original_config_json(sizes: OriginalSizes) -> dict[str, Any]:
    """config.json as the hub has it (BigCodecConfig), plus the sizes the original hard-codes when small."""
    values: dict[str, Any] = {
        "architectures": ["XCodec2Model"],
        "codec_decoder_hidden_size": sizes.hidden_size,
        "codec_encoder_hidden_size": sizes.hidden_size,
        "model_type": "xcodec",
        "semantic_hidden_size": sizes.semantic_hidden_size,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_vocos": True,
    }
    if not sizes.is_full_size:
        values.update(sizes.xcodec2_overrides())
    return values


def save_original_layout(
    model: Any, sizes: OriginalSizes, folder: Path, *, legacy_names: bool = True
) -> Path:
    """Write config.json + model.safetensors the way the original hub repo holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    if legacy_names:
        state = legacy_weight_norm_names(state)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(_original_config_json(sizes), indent=2))
    return folder


def load_oracle(folder: Path) -> Any:
    """transformers.Xcodec2Model from a converted folder, insisting that every weight came from it."""
    import transformers

    loaded: Any = transformers.Xcodec2Model.from_pretrained(folder, output_loading_info=True)
    model, info = loaded
    assert not any(info.values()), f"transformers loading was not exact: {info}"
    return model.eval()


def assert_codes_equal_or_ties(codes: torch.Tensor, reference: torch.Tensor, bounded: torch.Tensor) -> None:
    """Codes equal, except where the reference's pre-rounding value is within TIE_MARGIN of x.5,
    on at most 1% of the frames.

    codes, reference: (batch, 1, frames); bounded: (batch, frames, digits), the reference
    FSQ input after its (double) bound, whose rounding decides each digit.
    """
    assert codes.shape == reference.shape
    differing = (codes.long() != reference.long()).nonzero().tolist()
    assert_tie_share(len(differing), reference.numel(), what="X-Codec2 codes vs the original")
    for batch, _, frame in differing:
        value = bounded[batch, frame]
        # round() flips at k + 0.5: distance of each digit's value from its nearest flip point.
        distance_to_flip = (value - value.floor() - 0.5).abs()
        assert distance_to_flip.min() < TIE_MARGIN, f"code differs at frame {frame} without an FSQ near-tie"


@pytest.fixture(scope="module")
def small_original(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_original_model(SMALL, seed=0)
    folder = save_original_layout(model, SMALL, tmp_path_factory.mktemp("original") / "xcodec2")
    # 0.3 s = 4800 samples, a multiple of the hop: the original still pads a whole hop (quirk), 16 frames.
    wave = 0.3 * torch.randn(1, 4800)
    wave[:, 4000:] = 0.0  # a silent stretch too
    with torch.no_grad():
        codes = model.encode_code(wave)
        audio = model.decode_code(codes)
    # Codes that vary frame to frame, so a wrong encoder tensor shows up as a wrong code.
    assert_codes_vary(codes, min_distinct=8)
    return {"model": model, "folder": folder, "wave": wave, "codes": codes, "audio": audio}


def _reference_bounded(
    oracle: Any, padded: torch.Tensor, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}
    handle = oracle.quantizer.project_in.register_forward_hook(
        lambda module, args, output: captured.__setitem__("projected", output)
    )
    try:
        with torch.no_grad():
            codes = oracle.encode(input_values=padded, input_features=features).audio_codes
    finally:
        handle.remove()
    fsq = oracle.quantizer.quantizer
    # The original bounds twice before rounding (ResidualFSQ, then FSQ.quantize).
    return codes, fsq.bound(fsq.bound(captured["projected"]))


def test_small_original_parity_through_converted_folder(
    small_original: dict[str, Any], tmp_path: Path
) -> None:
    from xcodec.models.xcodec2 import Xcodec2Model

    original = small_original["model"]
    converted = tmp_path / "hf"
    convert_original_xcodec2(small_original["folder"], converted)
    assert json.loads((converted / "config.json").read_text())["model_type"] == "xcodec2"

    padded, features = original_encode_inputs(small_original["wave"], original.feature_extractor)
    oracle = load_oracle(converted)
    oracle_codes, bounded = _reference_bounded(oracle, padded, features)
    expected_codes = small_original["codes"]
    assert oracle_codes.shape == expected_codes.shape == (1, 1, 16)
    assert_codes_equal_or_ties(oracle_codes, expected_codes, bounded)

    ours = Xcodec2Model.from_pretrained(converted)
    with torch.no_grad():
        our_codes = ours.encode(padded, features).audio_codes
    assert_codes_equal_or_ties(our_codes, expected_codes, bounded)

    # Decode the ORIGINAL's codes on every side, so the audio comparison is of decoders only.
    with torch.no_grad():
        oracle_audio = oracle.decode(audio_codes=expected_codes.long()).audio_values
        our_audio = ours.decode(audio_codes=expected_codes.long()).audio_values
    expected_audio = small_original["audio"]
    assert_close_to_peak(oracle_audio, expected_audio, AUDIO_TOLERANCE, what="oracle audio")
    assert_close_to_peak(our_audio, expected_audio, AUDIO_TOLERANCE)


def test_our_model_detects_and_loads_the_original_layout(small_original: dict[str, Any]) -> None:
    from xcodec.models.xcodec2 import Xcodec2Model

    original = small_original["model"]
    ours = Xcodec2Model.from_pretrained(small_original["folder"])  # no conversion step
    padded, features = original_encode_inputs(small_original["wave"], original.feature_extractor)
    with torch.no_grad():
        codes = ours.encode(padded, features).audio_codes
        audio = ours.decode(audio_codes=small_original["codes"].long()).audio_values
    assert torch.equal(codes.to(small_original["codes"].dtype), small_original["codes"])
    assert_close_to_peak(audio, small_original["audio"], AUDIO_TOLERANCE)


def test_both_weight_norm_namings_convert_identically(small_original: dict[str, Any], tmp_path: Path) -> None:
    model = small_original["model"]
    modern = save_original_layout(model, SMALL, tmp_path / "modern", legacy_names=False)
    assert is_original_xcodec2(modern)
    config_legacy, legacy_state = load_original_xcodec2_state(small_original["folder"])
    config_modern, modern_state = load_original_xcodec2_state(modern)
    assert config_legacy == config_modern
    assert legacy_state.keys() == modern_state.keys()
    for key in legacy_state:
        assert torch.equal(legacy_state[key], modern_state[key]), key
    # Folding really happened: the conv weight is g * v / |v|, not v.
    folded = legacy_state["acoustic_encoder.conv1.weight"]
    v = model.state_dict()["CodecEnc.conv_blocks.0.parametrizations.weight.original1"]
    assert folded.shape == v.shape and not torch.allclose(folded, v)


def test_conversion_is_strict(small_original: dict[str, Any]) -> None:
    config, _ = load_original_xcodec2_state(small_original["folder"])
    state = legacy_weight_norm_names(dict(small_original["model"].state_dict()))
    converted = convert_original_state(state, config)
    # Layer 16 of the 17-layer W2V-BERT is past `hidden_states[16]`: dropped, nothing else.
    assert "semantic_model.encoder.layers.16.final_layer_norm.weight" in state
    assert not any(key.startswith("semantic_encoder.encoder.layers.16.") for key in converted)
    assert any(key.startswith("semantic_encoder.encoder.layers.15.") for key in converted)

    extra = {**state, "generator.backbone.unknown.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"generator\.backbone\.unknown\.weight"):
        convert_original_state(extra, config)
    lacking = {k: v for k, v in state.items() if k != "generator.backbone.transformers.1.att.c_attn.weight"}
    with pytest.raises(CheckpointError, match=r"transformers\.1\.att\.c_attn\.weight"):
        convert_original_state(lacking, config)
    no_gain = {k: v for k, v in state.items() if k != "CodecEnc.conv_final_block.1.weight_g"}
    with pytest.raises(CheckpointError, match=r"conv_final_block\.1\.weight_g"):
        convert_original_state(no_gain, config)


def test_converted_keys_are_the_transformers_keys(small_original: dict[str, Any]) -> None:
    import transformers

    config, state = load_original_xcodec2_state(small_original["folder"])
    oracle = transformers.Xcodec2Model(transformers.Xcodec2Config(**_transformers_kwargs(config)))
    expected = oracle.state_dict()
    assert set(state) == set(expected)
    for key, tensor in state.items():
        assert tensor.shape == expected[key].shape, key


def _transformers_kwargs(config: Xcodec2Config) -> dict[str, Any]:
    import transformers

    values = config.to_dict()
    values.pop("model_type")
    values["semantic_model_config"] = transformers.Wav2Vec2BertConfig(**values["semantic_model_config"])
    return values


def test_detection(small_original: dict[str, Any], tmp_path: Path) -> None:
    assert is_original_xcodec2(small_original["folder"])
    converted = tmp_path / "hf"
    convert_original_xcodec2(small_original["folder"], converted)
    assert not is_original_xcodec2(converted)
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps(_original_config_json(OriginalSizes())))
    assert is_original_xcodec2(config_only)
    assert not is_original_xcodec2(tmp_path / "nothing")


def test_hub_config_maps_to_the_default_config() -> None:
    hub = _original_config_json(OriginalSizes())
    config = original_config_to_xcodec2(hub)
    default = Xcodec2Config()
    assert config.to_dict() | {"semantic_model_config": None} == default.to_dict() | {
        "semantic_model_config": None
    }
    assert config.semantic_model_config.num_hidden_layers == 16
    assert config.semantic_model_config.hidden_size == 1024
    with pytest.raises(ConfigError, match="codec_encoder_hidden_size"):
        original_config_to_xcodec2({**hub, "codec_encoder_hidden_size": 512})
    with pytest.raises(ConfigError, match="use_vocos"):
        original_config_to_xcodec2({**hub, "use_vocos": False})


def test_torchtune_stand_in_rotates_adjacent_pairs_by_position() -> None:
    """The stand-in equals the RoPE formula torchtune documents: complex rotation of (x[2i], x[2i+1])."""
    batch, seq, heads, head_dim = 2, 5, 3, 8
    x = torch.randn(batch, seq, heads, head_dim)
    rotary = TorchtuneRotary(dim=head_dim)
    theta = 10_000.0 ** (-torch.arange(0, head_dim, 2).double() / head_dim)
    angles = torch.arange(seq).double()[:, None] * theta[None, :]  # (seq, head_dim/2)
    pairs = torch.view_as_complex(x.double().reshape(batch, seq, heads, head_dim // 2, 2).contiguous())
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)[None, :, None, :])
    torch.testing.assert_close(rotary(x), expected.reshape(x.shape).float(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(rotary(x)[:, 1:], x[:, 1:], atol=1e-3)  # it does rotate


def test_original_rotary_runs_over_heads_and_is_inert() -> None:
    """The original decoder's rotary sees the heads axis as "seq", so it cannot change attention.

    Rotating q and k of one head by the same angle leaves their dot products alone.
    The same rotary applied over time (what its author meant) changes the output, which
    shows the comparison can fail.
    """
    roformer = original_modules().roformer
    dim, heads, frames = 64, 4, 9
    torch.manual_seed(1)
    rotary = TorchtuneRotary(dim=dim // heads)
    attention = roformer.Attention(dim=dim, n_heads=heads, rotary_embed=rotary).eval()
    x = torch.randn(2, frames, dim)
    with torch.no_grad():
        with_rotary = attention(x)
        attention.rotary_embed = torch.nn.Identity()
        without_rotary = attention(x)
        attention.rotary_embed = _OverTime(rotary)
        over_time = attention(x)
    torch.testing.assert_close(with_rotary, without_rotary, atol=1e-5, rtol=1e-5)
    assert (over_time - with_rotary).abs().max() > 1e-3


class _OverTime(torch.nn.Module):
    """Apply a torchtune rotary to (batch, heads, time, head_dim) with time as its "seq" axis."""

    def __init__(self, rotary: torch.nn.Module) -> None:
        super().__init__()
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rotary(x.transpose(1, 2)).transpose(1, 2)


@pytest.mark.slow
def test_full_size_original_parity(tmp_path: Path) -> None:
    """The original at its hard-coded size (24-layer W2V-BERT, ~820M parameters), 1 s of audio."""
    from xcodec.models.xcodec2 import Xcodec2Model

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    sizes = OriginalSizes()
    original = build_original_model(sizes, seed=0)
    folder = save_original_layout(original, sizes, tmp_path / "original")
    wave = 0.3 * torch.randn(1, 16000)
    with torch.no_grad():
        expected_codes = original.encode_code(wave)
        expected_audio = original.decode_code(expected_codes)
    assert_codes_vary(expected_codes, min_distinct=2)
    padded, features = original_encode_inputs(wave, original.feature_extractor)
    del original
    config, _ = load_original_xcodec2_state(folder)
    assert config.semantic_model_config.num_hidden_layers == 16 and config.hidden_size == 1024

    converted = tmp_path / "hf"
    convert_original_xcodec2(folder, converted)
    oracle = load_oracle(converted)
    oracle_codes, bounded = _reference_bounded(oracle, padded, features)
    assert_codes_equal_or_ties(oracle_codes, expected_codes, bounded)
    with torch.no_grad():
        oracle_audio = oracle.decode(audio_codes=expected_codes.long()).audio_values
    assert_close_to_peak(oracle_audio, expected_audio, AUDIO_TOLERANCE, what="oracle audio")
    del oracle

    ours = Xcodec2Model.from_pretrained(folder)
    with torch.no_grad():
        our_codes = ours.encode(padded, features).audio_codes
        our_audio = ours.decode(audio_codes=expected_codes.long()).audio_values
    assert_codes_equal_or_ties(our_codes, expected_codes, bounded)
    assert_close_to_peak(our_audio, expected_audio, AUDIO_TOLERANCE)
