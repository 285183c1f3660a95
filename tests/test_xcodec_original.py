"""X-Codec (v1) checkpoints in the ORIGINAL layout (zhenye234/xcodec ``SoundStream`` .pth + config.yaml).

Default suite: a tiny model's weights renamed back to the original keys by an inverse
map written here independently of the loader's table, with weight norm unfolded in
the original's convention; it must load strictly and match the Transformers reference.
Slow: the shared fixture (base-size HuBERT/WavLM, ~700 MB of rule-generated weights)
must reproduce the original code's codes exactly and its audio within 1e-4.
"""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _oracle import require_oracle

transformers = require_oracle("transformers")

from test_xcodec_model import AUDIO_TOLERANCE, assert_codes_match, test_audio, tiny_reference  # noqa: E402

from xcodec.checkpoints.common import load_state_dict_strict  # noqa: E402
from xcodec.checkpoints.xcodec import (  # noqa: E402
    fold_xcodec_weight_norm,
    load_xcodec,
    original_state_to_transformers,
    read_original_generator_config,
    read_original_state_dict,
    xcodec_config_from_original,
)
from xcodec.configs.ssl import HubertConfig, WavLMConfig  # noqa: E402
from xcodec.configs.xcodec import XcodecConfig  # noqa: E402
from xcodec.errors import CheckpointError  # noqa: E402
from xcodec.models.xcodec import XcodecModel  # noqa: E402

FIXTURE = "xcodec_original"
BANDWIDTHS = (0.5, 1.0, 1.5, 2.0, 4.0)

# ---- inverse key map: ours -> original ---------------------------------------------------

_UNIT = {"snake1": "0", "conv1": "1", "snake2": "2", "conv2": "3"}
_INVERSE_RULES: list[tuple[str, object]] = [
    (r"acoustic_encoder\.conv1\.(.+)", lambda m: f"encoder.block.0.{m[1]}"),
    (
        r"acoustic_encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
        lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block.{_UNIT[m[3]]}.{m[4]}",
    ),
    (
        r"acoustic_encoder\.block\.(\d+)\.snake1\.(.+)",
        lambda m: f"encoder.block.{int(m[1]) + 1}.block.3.{m[2]}",
    ),
    (
        r"acoustic_encoder\.block\.(\d+)\.conv1\.(.+)",
        lambda m: f"encoder.block.{int(m[1]) + 1}.block.4.{m[2]}",
    ),
    (r"acoustic_encoder\.snake1\.(.+)", lambda m: f"encoder.block.5.{m[1]}"),
    (r"acoustic_encoder\.conv2\.(.+)", lambda m: f"encoder.block.6.{m[1]}"),
    (r"acoustic_decoder\.conv1\.(.+)", lambda m: f"decoder_2.model.0.{m[1]}"),
    (
        r"acoustic_decoder\.block\.(\d+)\.snake1\.(.+)",
        lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.0.{m[2]}",
    ),
    (
        r"acoustic_decoder\.block\.(\d+)\.conv_t1\.(.+)",
        lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.1.{m[2]}",
    ),
    (
        r"acoustic_decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.(.+)",
        lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.block.{_UNIT[m[3]]}.{m[4]}",
    ),
    (r"acoustic_decoder\.snake1\.(.+)", lambda m: f"decoder_2.model.5.{m[1]}"),
    (r"acoustic_decoder\.conv2\.(.+)", lambda m: f"decoder_2.model.6.{m[1]}"),
    # The original wraps every semantic conv as `.conv`, except the residual units' 1x1 conv2.
    (r"(\w+_semantic\..*res_units\.\d+\.conv2\.weight)", lambda m: m[1]),
    (r"(\w+_semantic\..*(?:conv|conv1|conv2))\.(weight|bias)", lambda m: f"{m[1]}.conv.{m[2]}"),
    (r"fc\.(.+)", lambda m: f"fc_prior.{m[1]}"),
    (r"fc1\.(.+)", lambda m: f"fc_post1.{m[1]}"),
    (r"fc2\.(.+)", lambda m: f"fc_post2.{m[1]}"),
    (
        r"quantizer\.quantizers\.(\d+)\.codebook\.(.+)",
        lambda m: f"quantizer.vq.layers.{m[1]}._codebook.{m[2]}",
    ),
    (r"(semantic_model\..+)", lambda m: m[1]),
]


def to_original_key(key: str) -> str:
    for pattern, build in _INVERSE_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return build(match)  # type: ignore[operator]
    raise AssertionError(f"no inverse rule for {key}")


def to_original_state(model: XcodecModel) -> dict[str, torch.Tensor]:
    """Our weights in the original layout, with weight norm unfolded as the original stores it.

    v is w scaled by a random positive factor per weight-norm slice and g = ||w||, so a
    loader that ignores g, or normalises over the wrong axis (ConvTranspose: dim 0 is the
    input-channel axis), gets wrong weights.
    """
    original: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(7)
    for key, value in model.state_dict().items():
        name = to_original_key(key)
        is_conv = value.dim() == 3 and key.endswith(".weight")
        if is_conv and name.startswith(("encoder.", "decoder_2.")):
            base = name[: -len("weight")]
            axes = (1, 2)  # weight_norm's default dim 0, for Conv1d and ConvTranspose1d alike
            scale = 0.5 + torch.rand(value.shape[0], 1, 1, generator=generator)
            original[base + "weight_g"] = value.norm(dim=axes, keepdim=True)
            original[base + "weight_v"] = value * scale
        elif key == "semantic_model.encoder.pos_conv_embed.conv.weight":
            base = name[: -len("weight")] + "parametrizations.weight."
            scale = 0.5 + torch.rand(1, 1, value.shape[2], generator=generator)
            original[base + "original0"] = value.norm(dim=(0, 1), keepdim=True)
            original[base + "original1"] = value * scale
        else:
            original[name] = value.clone()
    return original


@pytest.fixture(scope="module", params=["hubert", "wavlm"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    reference = tiny_reference(request.param, seed=5)
    folder = tmp_path_factory.mktemp("tiny")
    reference.save_pretrained(folder)
    return reference, load_xcodec(folder)


def _load_tiny_original(config: XcodecConfig, original: dict[str, torch.Tensor]) -> XcodecModel:
    model = XcodecModel(config)
    state = original_state_to_transformers(
        original, num_blocks=len(config.acoustic_model_config.downsampling_ratios)
    )
    load_state_dict_strict(model, fold_xcodec_weight_norm(state), source="tiny original")
    return model


def test_tiny_original_layout_matches_transformers(tiny) -> None:
    reference, ours = tiny
    original = to_original_state(ours)
    assert any(key.endswith("block.1.weight_g") and key.startswith("decoder_2.") for key in original)
    assert "encoder_semantic.conv_blocks.0.res_units.0.conv1.conv.weight" in original
    assert "decoder_semantic.conv2.conv.weight" in original
    model = _load_tiny_original(ours.config, original)
    audio = test_audio()
    with torch.no_grad():
        for bandwidth in (0.2, 1.6):
            expected = reference.encode(audio, bandwidth).audio_codes
            assert_codes_vary(expected[:, 0], min_distinct=3)
            assert_codes_match(reference, audio, model.encode(audio, bandwidth).audio_codes, expected)
        codes = torch.randint(0, 16, (2, 8, 6))
        decoded, expected_audio = model.decode(codes).audio_values, reference.decode(codes).audio_values
    assert_close_to_peak(decoded, expected_audio, AUDIO_TOLERANCE)


def test_tiny_original_unknown_and_missing_keys_are_named(tiny) -> None:
    _, ours = tiny
    original = to_original_state(ours)
    original["encoder.block.9.alpha"] = torch.ones(1)
    with pytest.raises(CheckpointError, match=r"no known place \(1\): \['encoder\.block\.9\.alpha'\]"):
        _load_tiny_original(ours.config, original)
    original = to_original_state(ours)
    del original["fc_post1.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc1\.bias"):
        _load_tiny_original(ours.config, original)
    original = to_original_state(ours)
    del original["decoder_2.model.1.block.1.weight_g"]
    with pytest.raises(CheckpointError, match=r"acoustic_decoder\.block\.0\.conv_t1\.weight_v"):
        _load_tiny_original(ours.config, original)


def test_uninitialised_codebook_is_refused(tiny) -> None:
    _, ours = tiny
    original = to_original_state(ours)
    original["quantizer.vq.layers.3._codebook.inited"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"quantizer\.quantizers\.3\.codebook\.inited"):
        _load_tiny_original(ours.config, original)


def test_non_tensor_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "xcodec.pth"
    torch.save({"fc_prior.bias": torch.arange(3.0), "note": io.BytesIO(b"optimizer state")}, path)
    state = read_original_state_dict(path)
    assert list(state) == ["fc_prior.bias"] and torch.equal(state["fc_prior.bias"], torch.arange(3.0))


# ---- config.yaml ----------------------------------------------------------------------

# Shaped like the repo's config/codec_16k_6kbps_v3_vqdp.yaml: comments, other sections,
# nested mappings and flow lists around the generator block.
_CONFIG_YAML = """
########### model config ###########
generator:
  name: SoundStream
  config:
    n_filters: 32
    D: 256
    target_bandwidths: [0.5, 1, 1.5, 2, 4]
    ratios: [8, 5, 4, 2] # downsampling by 320
    sample_rate: 16000
    bins: 1024
    semantic_techer: wavlm_base_plus
# d_list: ['mpd', 'msd']
d_list: ['mfd']
mfd:
  name: MultiFrequencyDiscriminator
  config:
    hop_lengths: [32, 64, 128]
    domain: double
optimizer:
  g:
    config:
      lr: 2e-4
      betas: [0.8, 0.99]
audio_norm_scale: 0.95
"""


def test_config_yaml_with_and_without_pyyaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML reads config.yaml (an optional dependency of this layout); without it the
    error names the file and the install command."""
    yaml = require_oracle("yaml")
    path = tmp_path / "config.yaml"
    path.write_text(_CONFIG_YAML)
    with_pyyaml = read_original_generator_config(path)
    assert with_pyyaml == yaml.safe_load(_CONFIG_YAML)["generator"]["config"]
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(CheckpointError, match=r"config\.yaml.*pip install pyyaml"):
        read_original_generator_config(path)


def test_config_from_original_matches_transformers_converter() -> None:
    """The converter builds XcodecConfig(target_bandwidths, acoustic {64, 1024, ratios, ratios,
    sample_rate, D}, the teacher's hub config, sample_rate, codebook_size=bins)."""
    kwargs = {"n_filters": 32, "D": 256, "target_bandwidths": [0.5, 1, 1.5, 2, 4], "ratios": [8, 5, 4, 2],
              "sample_rate": 16000, "bins": 1024, "semantic_techer": "wavlm_base_plus"}  # fmt: skip
    ours = xcodec_config_from_original(kwargs)
    theirs = transformers.XcodecConfig(
        target_bandwidths=kwargs["target_bandwidths"],
        acoustic_model_config={
            "encoder_hidden_size": 64,
            "decoder_hidden_size": 1024,
            "downsampling_ratios": kwargs["ratios"],
            "upsampling_ratios": kwargs["ratios"],
            "sampling_rate": kwargs["sample_rate"],
            "hidden_size": kwargs["D"],
        },
        semantic_model_config=transformers.WavLMConfig(),
        sample_rate=kwargs["sample_rate"],
        codebook_size=kwargs["bins"],
    ).to_dict()
    mine = ours.to_dict()
    for key, value in mine.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                assert theirs[key][inner] == inner_value, f"{key}.{inner}"
        else:
            assert theirs[key] == value, key
    assert isinstance(ours.semantic_model_config, WavLMConfig)
    general = xcodec_config_from_original({**kwargs, "semantic_techer": "hubert_base_general"})
    assert isinstance(general.semantic_model_config, HubertConfig)
    with pytest.raises(CheckpointError, match="semantic_techer 'whisper'"):
        xcodec_config_from_original({**kwargs, "semantic_techer": "whisper"})
    with pytest.raises(CheckpointError, match="does not take"):
        xcodec_config_from_original({**kwargs, "hidden": 3})


# ---- the shared fixture: original code's outputs on rule-generated base-size weights ------


def _make_weights(fixtures_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_weights", fixtures_dir / FIXTURE / "make_weights.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("teacher", ["hubert_base", "wavlm_base_plus"])
def test_original_fixture_reproduces_codes_and_audio(
    fixtures_dir: Path, tmp_path: Path, teacher: str
) -> None:
    folder = fixtures_dir / FIXTURE
    # The fixture's own CLI writes the .pth and config.yaml exactly as published.
    subprocess.run(
        [sys.executable, str(folder / "make_weights.py"), str(folder / f"keys_{teacher}.tsv"),
         str(tmp_path / "xcodec.pth"), "--config", str(folder / f"expected_{teacher}.npz")],
        check=True, capture_output=True,
    )  # fmt: skip
    expected = np.load(folder / f"expected_{teacher}.npz")
    model = load_xcodec(tmp_path)
    assert model.config.semantic_model_config.model_type == ("wavlm" if "wavlm" in teacher else "hubert")
    audio = torch.from_numpy(expected["input"])
    with torch.inference_mode():
        for bandwidth in BANDWIDTHS:
            codes = model.encode(audio, bandwidth).audio_codes
            # The original returns (n_q, batch, frames); ours is (batch, n_q, frames).
            want = torch.from_numpy(expected[f"codes_bw{bandwidth}"]).transpose(0, 1)
            assert_codes_vary(want[:, 0], min_distinct=3, what=f"fixture codes at {bandwidth} kbps")
            assert torch.equal(codes, want), bandwidth
        for bandwidth in (4.0, 0.5):
            stored = torch.from_numpy(expected[f"codes_bw{bandwidth}"]).transpose(0, 1)
            audio_out = model.decode(stored).audio_values
            expected_audio = torch.from_numpy(expected[f"audio_bw{bandwidth}"])
            assert_close_to_peak(
                audio_out, expected_audio, AUDIO_TOLERANCE, what=f"audio at {bandwidth} kbps"
            )


@pytest.mark.slow
def test_original_fixture_in_memory_state_dict(fixtures_dir: Path) -> None:
    """build_state_dict straight into the key map (no .pth): same diagnostics as the original."""
    make_weights = _make_weights(fixtures_dir)
    folder = fixtures_dir / FIXTURE
    original, left = make_weights.build_state_dict(str(folder / "keys_hubert_base.tsv"))
    assert left == []
    expected = np.load(folder / "expected_hubert_base.npz")
    config = xcodec_config_from_original(
        {"n_filters": 32, "D": 256, "target_bandwidths": [0.5, 1, 1.5, 2, 4], "ratios": [8, 5, 4, 2],
         "sample_rate": 16000, "bins": 1024, "semantic_techer": "hubert_base"}
    )  # fmt: skip
    model = _load_tiny_original(config, original)
    audio = torch.from_numpy(expected["input"])
    with torch.inference_mode():
        target = model.semantic_model.mean_hidden_states(torch.nn.functional.pad(audio[:, 0], (160, 160)))
    assert (target - torch.from_numpy(expected["diag_semantic_target"])).abs().max().item() <= 1e-4
