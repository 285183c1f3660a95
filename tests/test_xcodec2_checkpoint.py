"""X-Codec2 checkpoints: Transformers layout in both directions, strictness, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from _oracle import require_oracle

require_oracle("transformers")

import transformers  # noqa: E402
from _asserts import assert_codes_vary  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from test_xcodec2_model import perturbed_reference, tiny_reference_config  # noqa: E402

from xcodec.checkpoints.xcodec2 import load_xcodec2, save_xcodec2  # noqa: E402
from xcodec.errors import CheckpointError  # noqa: E402
from xcodec.models.xcodec2 import Xcodec2Model  # noqa: E402

HOP = 320


def tiny_reference() -> transformers.Xcodec2Model:
    """The shared tiny X-Codec2 (tests/_tiny.py) as the oracle builds it, every parameter perturbed."""
    return perturbed_reference(tiny_reference_config(), seed=0)


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    torch.set_num_threads(1)
    reference = tiny_reference()
    folder = tmp_path_factory.mktemp("reference")
    reference.save_pretrained(folder)
    return reference, folder


def inputs(frames: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {
        "input_values": 0.3 * torch.randn(1, 1, HOP * frames, generator=generator),
        "input_features": torch.randn(1, frames, 160, generator=generator),
    }


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_save_load_round_trip_is_bit_exact(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    ours = Xcodec2Model.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    again = Xcodec2Model.from_pretrained(tmp_path)
    first, second = ours.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    with torch.inference_mode():
        out1, out2 = ours(**inputs()), again(**inputs())
    assert_codes_vary(out1.audio_codes, min_distinct=3)
    assert torch.equal(out1.audio_codes, out2.audio_codes)
    assert torch.equal(out1.audio_values, out2.audio_values)


def test_transformers_loads_what_we_save(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    reference, folder = reference_folder
    ours = Xcodec2Model.from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    result: Any = transformers.Xcodec2Model.from_pretrained(tmp_path, output_loading_info=True)
    loaded, info = result
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded.eval()
    with torch.no_grad():
        expected = reference(**inputs())
        actual = loaded(**inputs())
    assert_codes_vary(expected.audio_codes, min_distinct=3)
    assert torch.equal(actual.audio_codes, expected.audio_codes)
    assert torch.equal(actual.audio_values, expected.audio_values)
    # Our config.json reproduces theirs field for field.
    ours_read = transformers.Xcodec2Config.from_pretrained(tmp_path).to_diff_dict()
    theirs_read = transformers.Xcodec2Config.from_pretrained(folder).to_diff_dict()
    assert ours_read == theirs_read


def test_preprocessor_config_is_what_transformers_writes(
    reference_folder: tuple[Any, Path], tmp_path: Path
) -> None:
    # The top-level Transformers name is a stub without torchaudio; the module holds the real class,
    # and torchaudio is needed only to compute features, not to read or write the config.
    from transformers.models.xcodec2.feature_extraction_xcodec2 import Xcodec2FeatureExtractor

    _, folder = reference_folder
    Xcodec2Model.from_pretrained(folder).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "preprocessor_config.json").read_text())
    theirs = Xcodec2FeatureExtractor.from_pretrained(tmp_path).to_dict()
    default = object.__new__(Xcodec2FeatureExtractor)
    Xcodec2FeatureExtractor.__init__(default)
    assert written == json.loads(default.to_json_string())
    assert theirs["hop_length"] == 320 and theirs["sampling_rate"] == 16000
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Xcodec2Model"]


def test_sharded_checkpoint_loads(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    reference, folder = reference_folder
    reference.save_pretrained(tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    sharded = Xcodec2Model.from_pretrained(tmp_path)
    single = Xcodec2Model.from_pretrained(folder)
    for key, value in single.state_dict().items():
        assert torch.equal(sharded.state_dict()[key], value), key


def test_device_and_dtype_arguments(reference_folder: tuple[Any, Path]) -> None:
    _, folder = reference_folder
    model = load_xcodec2(folder, device="cpu", dtype=torch.float64)
    assert model.dtype == torch.float64 and not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_missing_key_is_named(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    state = load_file(str(target / "model.safetensors"))
    del state["acoustic_decoder.head.linear.bias"]
    save_file(state, str(target / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): acoustic_decoder\.head\.linear\.bias"):
        Xcodec2Model.from_pretrained(target)


def test_unexpected_key_is_named(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    state = load_file(str(target / "model.safetensors"))
    state["quantizer.project_in.extra_scale"] = torch.ones(3)
    save_file(state, str(target / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): quantizer\.project_in\.extra_scale"):
        Xcodec2Model.from_pretrained(target)


def test_misshapen_key_is_named(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    state = load_file(str(target / "model.safetensors"))
    state["fc_encoder.bias"] = torch.zeros(5)
    save_file(state, str(target / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"fc_encoder\.bias: checkpoint \(5,\)"):
        Xcodec2Model.from_pretrained(target)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        Xcodec2Model.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        Xcodec2Model.from_pretrained(tmp_path / "absent")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a folder"):
        load_xcodec2(tmp_path / "file.txt")


def test_config_without_weights(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"neither model\.safetensors"):
        Xcodec2Model.from_pretrained(tmp_path)


def test_truncated_safetensors(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        Xcodec2Model.from_pretrained(target)


def test_unknown_model_type(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "xcodec"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'xcodec'"):
        Xcodec2Model.from_pretrained(target)
    (target / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        Xcodec2Model.from_pretrained(target)


def test_unbuildable_config_is_a_checkpoint_error(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    target = copy_checkpoint(folder, tmp_path / "ckpt")
    config = json.loads((target / "config.json").read_text())
    config["quantization_dim"] = 7
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="quantization_dim"):
        Xcodec2Model.from_pretrained(target)


def test_save_xcodec2_function_matches_method(reference_folder: tuple[Any, Path], tmp_path: Path) -> None:
    _, folder = reference_folder
    model = Xcodec2Model.from_pretrained(folder)
    save_xcodec2(model, tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for name in ("config.json", "preprocessor_config.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    state_a = load_file(str(tmp_path / "a" / "model.safetensors"))
    state_b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert state_a.keys() == state_b.keys() == model.state_dict().keys()


def test_original_layout_hook_is_used(
    reference_folder: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder the original-layout module recognises is read through it, not as Transformers layout."""
    import xcodec.checkpoints.xcodec2_original as original
    from xcodec.configs.xcodec2 import Xcodec2Config

    _, folder = reference_folder
    config = Xcodec2Config.from_json_file(folder / "config.json")
    state = load_file(str(folder / "model.safetensors"))
    seen: list[Path] = []

    def fake_convert(path: Path) -> tuple[Xcodec2Config, dict[str, torch.Tensor]]:
        seen.append(path)
        return config, state

    monkeypatch.setattr(original, "is_original_xcodec2", lambda path: path == tmp_path)
    monkeypatch.setattr(original, "load_original_xcodec2_state", fake_convert)
    # tmp_path has no config.json: only the hook can make it load.
    model = Xcodec2Model.from_pretrained(tmp_path)
    assert seen == [tmp_path]
    assert torch.equal(model.fc_encoder.weight, state["fc_encoder.weight"])
