"""X-Codec (v1) Transformers-layout checkpoints: round trips, weight-norm folding, strictness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _oracle import require_oracle
from safetensors.torch import load_file, save_file

transformers = require_oracle("transformers")

from test_xcodec_model import AUDIO_TOLERANCE, test_audio, tiny_reference  # noqa: E402

from xcodec.checkpoints.xcodec import load_xcodec, save_xcodec  # noqa: E402
from xcodec.errors import CheckpointError  # noqa: E402
from xcodec.models.xcodec import XcodecModel  # noqa: E402

POS_CONV = "semantic_model.encoder.pos_conv_embed.conv."


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xcodec_reference")
    tiny_reference("hubert", seed=3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(reference_folder: Path) -> transformers.XcodecModel:
    return transformers.XcodecModel.from_pretrained(reference_folder).eval()


def _same_outputs(model: XcodecModel, reference: transformers.XcodecModel) -> None:
    audio = test_audio(batch=1)
    with torch.no_grad():
        expected = reference.encode(audio).audio_codes
        codes = model.encode(audio).audio_codes
        assert_codes_vary(expected[:, 0], min_distinct=3)
        assert torch.equal(codes, expected)
        decoded, expected_audio = model.decode(codes).audio_values, reference.decode(expected).audio_values
    assert_close_to_peak(decoded, expected_audio, AUDIO_TOLERANCE)


def test_save_load_round_trip_is_bit_exact(reference_folder: Path, tmp_path: Path) -> None:
    model = load_xcodec(reference_folder)
    model.save_pretrained(tmp_path)
    again = XcodecModel.from_pretrained(tmp_path)
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    audio = test_audio(batch=1)
    with torch.no_grad():
        codes = model.encode(audio).audio_codes
        assert_codes_vary(codes[:, 0], min_distinct=3)
        assert torch.equal(codes, again.encode(audio).audio_codes)
        codes = torch.randint(0, 16, (1, 8, 5))
        assert torch.equal(model.decode(codes).audio_values, again.decode(codes).audio_values)
    assert again.config.to_dict() == model.config.to_dict()


def test_transformers_loads_what_we_save(reference_folder: Path, reference, tmp_path: Path) -> None:
    save_xcodec(load_xcodec(reference_folder), tmp_path)
    loaded, info = transformers.XcodecModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded.eval()
    audio = test_audio(batch=1)
    with torch.no_grad():
        expected = reference.encode(audio).audio_codes
        assert_codes_vary(expected[:, 0], min_distinct=3)
        assert torch.equal(loaded.encode(audio).audio_codes, expected)
        codes = torch.randint(0, 16, (1, 8, 5))
        decoded, expected_audio = loaded.decode(codes).audio_values, reference.decode(codes).audio_values
    assert_close_to_peak(decoded, expected_audio, AUDIO_TOLERANCE)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(extractor).__name__ == "DacFeatureExtractor"
    assert (extractor.sampling_rate, extractor.hop_length) == (16000, 320)


def test_acoustic_weight_norm_checkpoint_is_folded(reference, tmp_path: Path) -> None:
    """A checkpoint saved with weight norm on the DAC convs (parametrizations, and the legacy
    weight_g/weight_v names) loads with the norm folded, decoder transposed convs included."""
    weight_normed = tiny_reference("hubert", seed=3)
    weight_normed.apply_weight_norm()
    weight_normed.save_pretrained(tmp_path / "parametrized")
    state = load_file(tmp_path / "parametrized" / "model.safetensors")
    g_keys = [k for k in state if k.endswith("parametrizations.weight.original0")]
    assert any("conv_t1" in key for key in g_keys) and len(g_keys) > 30
    _same_outputs(load_xcodec(tmp_path / "parametrized"), reference)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    save_file(renamed, legacy / "model.safetensors")
    (legacy / "config.json").write_text((tmp_path / "parametrized" / "config.json").read_text())
    _same_outputs(load_xcodec(legacy), reference)


def test_sharded_checkpoint_loads(reference, tmp_path: Path) -> None:
    reference.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    _same_outputs(load_xcodec(tmp_path), reference)


def _edited_copy(source: Path, target: Path, edit) -> Path:
    target.mkdir()
    state = load_file(source / "model.safetensors")
    edit(state)
    save_file(state, target / "model.safetensors")
    (target / "config.json").write_text((source / "config.json").read_text())
    return target


def test_missing_key_is_named(reference_folder: Path, tmp_path: Path) -> None:
    folder = _edited_copy(reference_folder, tmp_path / "c", lambda s: s.pop("fc2.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc2\.bias"):
        load_xcodec(folder)


def test_unexpected_key_is_named(reference_folder: Path, tmp_path: Path) -> None:
    folder = _edited_copy(
        reference_folder, tmp_path / "c", lambda s: s.update({"fc3.weight": torch.zeros(2)})
    )
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): fc3\.weight"):
        load_xcodec(folder)


def test_misshapen_key_is_named(reference_folder: Path, tmp_path: Path) -> None:
    folder = _edited_copy(reference_folder, tmp_path / "c", lambda s: s.update({"fc.bias": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"fc\.bias: checkpoint \(3,\)"):
        load_xcodec(folder)


def test_half_a_weight_norm_pair_is_an_error(reference_folder: Path, tmp_path: Path) -> None:
    folder = _edited_copy(
        reference_folder, tmp_path / "c", lambda s: s.pop(POS_CONV + "parametrizations.weight.original0")
    )
    with pytest.raises(CheckpointError, match="original0"):
        load_xcodec(folder)


def test_other_model_type_is_refused(reference_folder: Path, tmp_path: Path) -> None:
    folder = _edited_copy(reference_folder, tmp_path / "c", lambda s: None)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "xcodec2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'xcodec2' model"):
        load_xcodec(folder)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_xcodec(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        XcodecModel.from_pretrained(tmp_path / "nowhere")


def test_dtype_and_device_arguments(reference_folder: Path) -> None:
    model = XcodecModel.from_pretrained(reference_folder, dtype=torch.float64, device="cpu")
    assert model.dtype == torch.float64 and not model.training
    assert model.quantizer.quantizers[0].codebook.embed.dtype == torch.float64
