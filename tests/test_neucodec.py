"""NeuCodec against transformers 5.23 ``NeuCodecModel`` (the oracle), tiny random configs.

The reference is built with random weights (every parameter perturbed, the FSQ input
projection widened so codes vary), saved with ``save_pretrained`` and loaded with ours.
Inputs come from Transformers' ``NeuCodecFeatureExtractor`` (its torchaudio fbank call,
torchaudio not being installable here, routed to our ``kaldi_fbank``, which
tests/test_features.py holds to Kaldi's own) and from ours. Codes must be identical,
24 kHz audio within 1e-4 of the reference's peak.

The original layout (``pytorch_model.bin``, no semantic weights) is written here from the
Transformers state with the original key names spelled out independently of our loader
(weight norm on the encoder, the decoder's embed and ResNet convs, training-only heads
added), so loading it back proves the loader maps every key.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _oracle import require_oracle
from safetensors.torch import load_file, save_file

transformers = require_oracle("transformers")

import xcodec  # noqa: E402
from xcodec.auto import AutoFeatureExtractor, AutoModel, detect_codec  # noqa: E402
from xcodec.checkpoints.common import unfold_weight_norm  # noqa: E402
from xcodec.checkpoints.neucodec import load_neucodec  # noqa: E402
from xcodec.cli import main as cli_main  # noqa: E402
from xcodec.configs.neucodec import NeuCodecConfig  # noqa: E402
from xcodec.errors import AudioError, CheckpointError  # noqa: E402
from xcodec.features import NeuCodecFeatureExtractor, kaldi_fbank  # noqa: E402
from xcodec.models.neucodec import NeuCodecModel  # noqa: E402

INPUT_RATE, OUTPUT_RATE = 16000, 24000
ENCODER_HOP, DECODER_HOP = 320, 480
AUDIO_TOLERANCE = 1e-4  # relative to the reference audio's peak


def tiny_reference_config() -> Any:
    semantic = transformers.Wav2Vec2BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        conv_depthwise_kernel_size=5,
    )
    return transformers.NeuCodecConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        encoder_hidden_size=8,
        semantic_model_config=semantic,
        quantization_dim=96,
        quantization_levels=[4, 4, 4, 4],
    )


def perturbed_reference(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    model = transformers.NeuCodecModel(tiny_reference_config()).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * (0.2 if param.dim() == 1 else 0.05))
    # At random init every frame lands on one or two codes. Standardise the FSQ input per
    # digit over a noise clip (x -> (x - mean) / std, folded into project_in) so codes vary.
    project_in = model.quantizer.project_in
    captured: list[torch.Tensor] = []
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        model.encode(**_ours_inputs(_waveforms([16000], seed=99)))
    handle.remove()
    values = captured[0].reshape(-1, captured[0].shape[-1])
    mean, std = values.mean(0), values.std(0)
    with torch.no_grad():
        project_in.weight.div_(std[:, None])
        project_in.bias.sub_(mean).div_(std)
    return model


def _fbank_for_reference(waveform: torch.Tensor, **options: object) -> torch.Tensor:
    assert options["frame_length"] == 25.0 and options["frame_shift"] == 10.0, options
    assert options["num_mel_bins"] == 80 and options["window_type"] == "povey", options
    return kaldi_fbank(waveform, sample_rate=INPUT_RATE, num_mel_bins=80, high_freq=INPUT_RATE / 2)[0]


@pytest.fixture(scope="module")
def reference_extractor() -> Any:
    module = importlib.import_module("transformers.models.neucodec.feature_extraction_neucodec")
    patch = pytest.MonkeyPatch()
    stand_in = types.SimpleNamespace(kaldi=types.SimpleNamespace(fbank=_fbank_for_reference))
    patch.setattr(module, "torchaudio", types.SimpleNamespace(compliance=stand_in), raising=False)
    extractor = module.NeuCodecFeatureExtractor()
    # Its __call__ is wrapped in a torchaudio availability check; call the function itself.
    call = inspect.unwrap(type(extractor).__call__)
    yield lambda audio: call(
        extractor, [a.numpy() for a in audio], sampling_rate=INPUT_RATE, return_tensors="pt"
    )
    patch.undo()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, NeuCodecModel, Path]:
    torch.set_num_threads(1)
    reference = perturbed_reference()
    folder = tmp_path_factory.mktemp("neucodec_tiny")
    reference.save_pretrained(folder)
    return reference, NeuCodecModel.from_pretrained(folder), folder


def _waveforms(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.15 * torch.randn(n, generator=generator) for n in lengths]


def _ours_inputs(audio: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(NeuCodecFeatureExtractor()(audio, sampling_rate=INPUT_RATE))


def _assert_audio_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    peak = expected.abs().max().item()
    assert peak > 1e-3
    assert (actual - expected).abs().max().item() <= AUDIO_TOLERANCE * peak


def _reference_alone(reference: Any, reference_extractor: Any, item: torch.Tensor) -> Any:
    with torch.no_grad():
        return reference(**reference_extractor([item]))


# ----------------------------------------------------------------------------- config, features


def test_config_round_trips_transformers_json(models: tuple[Any, NeuCodecModel, Path]) -> None:
    _, ours, folder = models
    config = ours.config
    assert (config.hop_length, config.n_fft, config.encoder_hop_length) == (480, 1920, 320)
    assert (ours.input_sample_rate, ours.sample_rate, ours.frame_rate) == (16000, 24000, 50.0)
    written = config.to_dict()
    assert "sampling_rate" not in written and written["model_type"] == "neucodec"
    reference = transformers.NeuCodecConfig.from_pretrained(folder)
    assert NeuCodecConfig.from_dict(reference.to_dict()) == config


@pytest.mark.parametrize("lengths", [[16000], [5000, 16000, 320, 639, 641]], ids=str)
def test_feature_extractor_matches_reference(reference_extractor: Any, lengths: list[int]) -> None:
    audio = _waveforms(lengths)
    expected = reference_extractor(audio)
    actual = _ours_inputs(audio)
    assert set(actual) == set(expected)
    for name in ("input_values", "padding_mask", "input_features_mask"):
        assert actual[name].dtype == expected[name].dtype, name
        assert torch.equal(actual[name], expected[name]), name
    assert actual["input_features"].shape == expected["input_features"].shape
    torch.testing.assert_close(actual["input_features"], expected["input_features"], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- model parity


def test_single_input_matches_reference(
    models: tuple[Any, NeuCodecModel, Path], reference_extractor: Any
) -> None:
    reference, ours, _ = models
    audio = _waveforms([12345], seed=1)
    with torch.no_grad():
        expected = reference(**reference_extractor(audio), output_latents=True)
    with torch.inference_mode():
        actual = ours(**_ours_inputs(audio), output_latents=True)
    assert expected.audio_codes.unique().numel() > 8  # varied codes, or equality proves little
    assert torch.equal(actual.audio_codes, expected.audio_codes)
    assert actual.audio_codes.dtype == expected.audio_codes.dtype
    torch.testing.assert_close(actual.latents, expected.latents, atol=1e-4, rtol=0)
    _assert_audio_close(actual.audio_values, expected.audio_values)
    with torch.no_grad():
        decoded = reference.decode(audio_codes=expected.audio_codes).audio_values
    with torch.inference_mode():
        ours_decoded = ours.decode(audio_codes=expected.audio_codes).audio_values
    assert ours_decoded.shape[-1] == expected.audio_codes.shape[-1] * DECODER_HOP
    _assert_audio_close(ours_decoded, decoded)


def test_perturbing_the_quantiser_input_changes_the_codes(models: tuple[Any, NeuCodecModel, Path]) -> None:
    """The parity above can fail: codes follow fc_encoder (fc_prior) and project_in."""
    _, ours, folder = models
    audio = _waveforms([8000], seed=2)
    with torch.inference_mode():
        base = ours.tokenize(audio[0][None]).audio_codes
    for name in ("fc_encoder", "quantizer.project_in"):
        changed = NeuCodecModel.from_pretrained(folder)
        bias = changed.get_submodule(name).bias
        assert isinstance(bias, torch.Tensor)
        with torch.no_grad():
            bias.add_(0.5)
        with torch.inference_mode():
            assert not torch.equal(changed.tokenize(audio[0][None]).audio_codes, base), name


def test_padded_batch_codes_match_reference_and_each_item_alone(
    models: tuple[Any, NeuCodecModel, Path], reference_extractor: Any
) -> None:
    reference, ours, _ = models
    lengths = [16000, 5000, 641]
    audio = _waveforms(lengths, seed=3)
    inputs = _ours_inputs(audio)
    with torch.no_grad():
        expected = reference(**reference_extractor(audio))
    with torch.inference_mode():
        plain = ours(**inputs)
        invariant = ours(**inputs, batch_invariant=True)
    # Called as Transformers calls it, the batch's codes are the reference's batch codes.
    assert torch.equal(plain.audio_codes, expected.audio_codes)
    # The longest item has no padding: its audio is the reference's (the reference masks
    # the others' attention with its 1.5x too long mask, see models/neucodec.py).
    _assert_audio_close(plain.audio_values[0], expected.audio_values[0])
    assert invariant.code_lengths.tolist() == [50, 15, 2]
    assert plain.audio_codes_mask.sum(-1).tolist() == [50, 15, 2]
    for index, item in enumerate(audio):
        alone = _reference_alone(reference, reference_extractor, item)
        count = int(invariant.code_lengths[index])
        assert alone.audio_codes.shape[-1] == count
        assert torch.equal(invariant.audio_codes[index, :, :count], alone.audio_codes[0])
        samples = alone.audio_values.shape[-1]
        _assert_audio_close(invariant.audio_values[index, :, :samples], alone.audio_values[0])


def test_tokenize_and_detokenize_equal_each_item_alone(
    models: tuple[Any, NeuCodecModel, Path], reference_extractor: Any
) -> None:
    reference, ours, _ = models
    lengths = [320, 639, 640, 3 * ENCODER_HOP + 17, 4800]
    audio = _waveforms(lengths, seed=4)
    waveforms = torch.zeros(len(audio), max(lengths))
    for index, item in enumerate(audio):
        waveforms[index, : item.numel()] = item
    with torch.inference_mode():
        tokens = ours.tokenize(waveforms, torch.tensor(lengths))
        decoded = ours.detokenize(tokens.audio_codes, tokens.code_lengths)
    assert tokens.code_lengths.tolist() == [-(-(n + 1) // ENCODER_HOP) - 1 for n in lengths]
    assert decoded.lengths.tolist() == [DECODER_HOP * c for c in tokens.code_lengths.tolist()]
    for index, item in enumerate(audio):
        count = int(tokens.code_lengths[index])
        alone = _reference_alone(reference, reference_extractor, item)
        assert torch.equal(tokens.audio_codes[index, :, :count], alone.audio_codes[0].long())
        assert not tokens.audio_codes[index, :, count:].any()
        with torch.no_grad():
            alone_audio = reference.decode(audio_codes=alone.audio_codes).audio_values[0, 0]
        _assert_audio_close(decoded.audio[index, : int(decoded.lengths[index])], alone_audio)
    with pytest.raises(AudioError, match="at least 320 samples"):
        ours.tokenize(torch.zeros(1, 319))


def test_code_count_quirk(models: tuple[Any, NeuCodecModel, Path], reference_extractor: Any) -> None:
    """Quirk "code count": T_pad / 320 - 1 codes (no 160/160 fbank padding), 480 output samples each."""
    reference, ours, _ = models
    for samples, codes in [(16000, 50), (93680, 292)]:
        audio = _waveforms([samples], seed=5)
        expected = _reference_alone(reference, reference_extractor, audio[0])
        with torch.inference_mode():
            actual = ours(**_ours_inputs(audio))
        assert expected.audio_codes.shape == actual.audio_codes.shape == (1, 1, codes)
        assert torch.equal(actual.audio_codes, expected.audio_codes)
        # 480 samples a code, cut to the input's duration (292 codes decode to 140,160 < 140,520).
        output_samples = min(codes * DECODER_HOP, samples * OUTPUT_RATE // INPUT_RATE)
        assert actual.audio_values.shape == expected.audio_values.shape == (1, 1, output_samples)
    with torch.inference_mode():
        assert (
            ours.decode(audio_codes=torch.zeros(1, 1, 50, dtype=torch.long)).audio_values.shape[-1] == 24000
        )
    # X-Codec2's extractor, with its 160/160 padding, gives one more frame for the same audio.
    assert NeuCodecFeatureExtractor().num_frames(16000) == 100
    assert xcodec.Xcodec2FeatureExtractor().num_frames(16000) == 102


# ----------------------------------------------------------------------------- checkpoints


def _original_key(key: str) -> str:
    """Transformers key -> the neucodec package's key (written from the original module names)."""
    rules = [
        (r"^semantic_adapter\.conv1\.", "SemanticEncoder_module.initial_conv."),
        (r"^semantic_adapter\.conv2\.", "SemanticEncoder_module.residual_blocks.1."),
        (r"^semantic_adapter\.conv3\.", "SemanticEncoder_module.residual_blocks.3."),
        (r"^semantic_adapter\.conv4\.", "SemanticEncoder_module.final_conv."),
        (r"^acoustic_encoder\.conv1\.", "CodecEnc.conv_blocks.0."),
        (r"^acoustic_encoder\.snake1\.", "CodecEnc.conv_final_block.0."),
        (r"^acoustic_encoder\.conv2\.", "CodecEnc.conv_final_block.1."),
        (r"^fc_encoder\.", "fc_prior."),
        (r"^quantizer\.", "generator.quantizer."),
        (r"^acoustic_decoder\.fc\.", "fc_post_a."),
        (r"^acoustic_decoder\.norm\.", "generator.backbone.final_layer_norm."),
        (r"^acoustic_decoder\.head\.linear\.", "generator.head.out."),
        (
            r"^acoustic_decoder\.layers\.(\d+)\.input_layernorm\.",
            r"generator.backbone.transformers.\1.att_norm.",
        ),
        (
            r"^acoustic_decoder\.layers\.(\d+)\.post_attention_layernorm\.",
            r"generator.backbone.transformers.\1.ffn_norm.",
        ),
        (
            r"^acoustic_decoder\.layers\.(\d+)\.self_attn\.o_proj\.",
            r"generator.backbone.transformers.\1.att.c_proj.",
        ),
        (r"^acoustic_decoder\.layers\.(\d+)\.mlp\.", r"generator.backbone.transformers.\1.mlp."),
        (r"^acoustic_decoder\.", "generator.backbone."),
    ]
    encoder_block = re.match(r"^acoustic_encoder\.block\.(\d+)\.(.*)$", key)
    if encoder_block:
        block, rest = int(encoder_block.group(1)) + 1, encoder_block.group(2)
        unit = re.match(r"^res_unit(\d)\.(snake1|conv1|snake2|conv2)\.(.*)$", rest)
        if unit:
            position = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}[unit.group(2)]
            return f"CodecEnc.conv_blocks.{block}.block.{int(unit.group(1)) - 1}.block.{position}.{unit.group(3)}"
        tail = re.match(r"^(snake1|conv1)\.(.*)$", rest)
        assert tail, key
        return f"CodecEnc.conv_blocks.{block}.block.{3 if tail.group(1) == 'snake1' else 4}.{tail.group(2)}"
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise AssertionError(f"no original name for {key}")


def _halves_to_pairs(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Transformers' rotate-half row order -> torchtune's interleaved pairs, head by head."""
    out_features, in_features = weight.shape
    head_dim = out_features // num_heads
    return (
        weight.reshape(num_heads, 2, head_dim // 2, in_features)
        .transpose(1, 2)
        .reshape(out_features, in_features)
    )


def write_original_layout(reference: Any, folder: Path) -> Path:
    """The reference's weights as neuphonic/neucodec ships them, plus its W2V-BERT folder; returns the latter."""
    state = {key: value.detach().clone() for key, value in reference.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    semantic_folder = folder.parent / f"{folder.name}_w2v_bert"
    semantic_folder.mkdir(exist_ok=True)
    semantic = {
        k.removeprefix("semantic_encoder."): v for k, v in state.items() if k.startswith("semantic_encoder.")
    }
    save_file({k: v.contiguous() for k, v in semantic.items()}, str(semantic_folder / "model.safetensors"))
    semantic_config = reference.config.semantic_model_config.to_dict()
    (semantic_folder / "config.json").write_text(json.dumps(semantic_config))

    heads = reference.config.num_attention_heads
    original: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("semantic_encoder."):
            continue
        qkv = re.match(r"^acoustic_decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.weight$", key)
        if qkv:
            if qkv.group(2) == "q":
                layer = f"acoustic_decoder.layers.{qkv.group(1)}.self_attn"
                fused = [
                    _halves_to_pairs(state[f"{layer}.q_proj.weight"], heads),
                    _halves_to_pairs(state[f"{layer}.k_proj.weight"], heads),
                    state[f"{layer}.v_proj.weight"],
                ]
                original[f"generator.backbone.transformers.{qkv.group(1)}.att.c_attn.weight"] = torch.cat(
                    fused
                )
            continue
        name = _original_key(key).replace(".act.beta", ".act.bias")
        weight_normed = name.startswith("CodecEnc.") and name.endswith(".weight") and value.dim() == 3
        decoder_conv = re.match(
            r"^generator\.backbone\.(embed|(prior|post)_net\.\d\.conv[12])\.weight$", name
        )
        if weight_normed or (decoder_conv and not name.startswith("generator.backbone.post_net.1")):
            g, v = unfold_weight_norm(value)
            # The hub file names pairs both ways; use the parametrization names on the decoder.
            if decoder_conv:
                base = name.removesuffix(".weight")
                original[f"{base}.parametrizations.weight.original0"] = g
                original[f"{base}.parametrizations.weight.original1"] = v
            else:
                original[name.replace(".weight", ".weight_g")] = g
                original[name.replace(".weight", ".weight_v")] = v
        else:
            original[name] = value
        if ".act.alpha" in name:  # the anti-aliasing filters the package saves as buffers
            stem = name.removesuffix(".act.alpha")
            original[f"{stem}.upsample.filter"] = torch.zeros(1, 1, 12)
            original[f"{stem}.downsample.lowpass.filter"] = torch.zeros(1, 1, 12)
    original["generator.head.istft.window"] = torch.hann_window(4 * DECODER_HOP)
    # Training-only heads the package ignores by name.
    original["fc_post_s.weight"] = torch.randn(4, 4)
    original["SemanticDecoder_module.initial_conv.weight"] = torch.randn(4, 4, 3)
    torch.save(original, folder / "pytorch_model.bin")
    (folder / "meta.yaml").write_text("repo: neuphonic/neucodec\n")
    return semantic_folder


def _ours_config(reference: Any) -> NeuCodecConfig:
    return NeuCodecConfig.from_dict(reference.config.to_dict())


def test_original_layout_loads_to_the_same_model(
    models: tuple[Any, NeuCodecModel, Path], tmp_path: Path
) -> None:
    reference, ours, _ = models
    original = tmp_path / "neucodec_original"
    semantic_folder = write_original_layout(reference, original)
    assert detect_codec(original) == "neucodec"
    loaded = load_neucodec(original, semantic_model=semantic_folder, config=_ours_config(reference))
    expected = ours.state_dict()
    actual = loaded.state_dict()
    assert set(actual) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, atol=1e-6, rtol=1e-6, msg=key)
    audio = _waveforms([7000], seed=6)[0][None]
    with torch.inference_mode():
        assert torch.equal(loaded.tokenize(audio).audio_codes, ours.tokenize(audio).audio_codes)
    # The decoder alone needs no semantic model at all.
    decoder = load_neucodec(
        original, semantic_model="/nonexistent", config=_ours_config(reference), parts="decoder"
    )
    assert decoder.semantic_encoder is None


def test_original_layout_is_strict(models: tuple[Any, NeuCodecModel, Path], tmp_path: Path) -> None:
    reference, _, _ = models
    original = tmp_path / "neucodec_original"
    semantic_folder = write_original_layout(reference, original)
    state = torch.load(original / "pytorch_model.bin", weights_only=True)
    del state["fc_prior.bias"]
    state["generator.backbone.extra.weight"] = torch.zeros(2)
    torch.save(state, original / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"fc_prior\.bias.*generator\.backbone\.extra\.weight"):
        load_neucodec(original, semantic_model=semantic_folder, config=_ours_config(reference))
    # A semantic model with a layer missing is named too.
    write_original_layout(reference, original)
    tensors = load_file(str(semantic_folder / "model.safetensors"))
    del tensors["encoder.layers.1.ffn2.output_dense.bias"]
    save_file(tensors, str(semantic_folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"semantic_model\.encoder\.layers\.1\.ffn2\.output_dense\.bias"
    ):
        load_neucodec(original, semantic_model=semantic_folder, config=_ours_config(reference))


def test_convert_writes_a_layout_transformers_loads(
    models: tuple[Any, NeuCodecModel, Path], reference_extractor: Any, tmp_path: Path
) -> None:
    reference, ours, _ = models
    original = tmp_path / "neucodec_original"
    semantic_folder = write_original_layout(reference, original)
    loaded = load_neucodec(original, semantic_model=semantic_folder, config=_ours_config(reference))
    converted = tmp_path / "converted"
    loaded.save_pretrained(converted)
    assert json.loads((converted / "preprocessor_config.json").read_text())["feature_extractor_type"] == (
        "NeuCodecFeatureExtractor"
    )
    theirs = transformers.NeuCodecModel.from_pretrained(converted).eval()
    audio = _waveforms([9000], seed=7)
    inputs = reference_extractor(audio)
    with torch.no_grad():
        assert torch.equal(theirs(**inputs).audio_codes, reference(**inputs).audio_codes)
    # The command does the same for a full-size config (the default sizes; tiny ones come
    # through load_neucodec's config=); here it converts a Transformers-layout folder.
    out = tmp_path / "cli"
    assert cli_main(["convert", str(converted), str(out)]) == 0
    assert NeuCodecModel.from_pretrained(out).config == ours.config


def test_auto_classes_dispatch_on_model_type(models: tuple[Any, NeuCodecModel, Path]) -> None:
    _, ours, folder = models
    model = AutoModel.from_pretrained(folder, parts="encoder")
    assert isinstance(model, NeuCodecModel) and model.acoustic_decoder is None
    assert isinstance(AutoFeatureExtractor.from_pretrained(folder), NeuCodecFeatureExtractor)
    decoder = NeuCodecModel.from_pretrained(folder, parts="decoder")
    codes = torch.randint(0, ours.codebook_size, (1, 1, 6))
    with torch.inference_mode():
        torch.testing.assert_close(decoder.decode(codes).audio_values, ours.decode(codes).audio_values)


def test_simple_api_takes_any_rate_and_returns_24k(
    models: tuple[Any, NeuCodecModel, Path], tmp_path: Path
) -> None:
    _, ours, folder = models
    codec = xcodec.load(folder)
    assert (codec.sample_rate, codec.input_sample_rate, codec.hop_length, codec.input_hop_length) == (
        24000,
        16000,
        480,
        320,
    )
    audio = _waveforms([16000, 4000], seed=8)
    codes = codec.encode(audio, sampling_rate=INPUT_RATE)
    assert [c.shape for c in codes] == [(1, 50), (1, 12)]
    with torch.inference_mode():
        for item, item_codes in zip(audio, codes, strict=True):
            assert torch.equal(item_codes, ours.tokenize(item[None]).audio_codes[0])
    # A 48 kHz input is resampled to 16 kHz first.
    upsampled = codec.encode(np.repeat(audio[0].numpy(), 3), sampling_rate=48000)
    assert isinstance(upsampled, torch.Tensor) and upsampled.shape == (1, 50)
    decoded = codec.decode(codes)
    assert [a.shape[-1] for a in decoded] == [24000, 12 * 480]
    # The CLI writes WAVs at the output rate, as long as the input.
    import soundfile as sf

    wav = tmp_path / "in.wav"
    sf.write(wav, audio[0].numpy(), INPUT_RATE)
    out = tmp_path / "out.wav"
    assert cli_main(["reconstruct", str(wav), "-o", str(out), "--model", str(folder)]) == 0
    info = sf.info(out)
    assert (info.samplerate, info.frames) == (24000, 24000)


def test_long_audio_windows_keep_the_code_count_and_24k_length(
    models: tuple[Any, NeuCodecModel, Path],
) -> None:
    """Windowed long audio on NeuCodec: its code count quirk (T_pad/320 - 1) and 16 -> 24 kHz
    hop survive the windows: the windowed result has the whole file's frames and output
    length, agrees with it on most frames (the semantic encoder attends per window, so
    not exactly), and its decode stays close to the whole decode."""
    from xcodec.api import Codec
    from xcodec.windowing import WindowConfig

    _, ours, _ = models
    wave = _waveforms([int(3.3 * INPUT_RATE)], seed=11)[0]
    wave = wave + 0.3 * torch.sin(2 * torch.pi * 220 * torch.arange(wave.shape[-1]) / INPUT_RATE)
    codec = Codec(ours, windows=WindowConfig(1.0, 0.2, 0.1))  # 50-frame windows: 4 of them
    with torch.inference_mode():
        whole = ours.tokenize(wave[None])
        expected = whole.audio_codes[0, :, : int(whole.code_lengths[0])]
        got = codec.encode(wave, sampling_rate=INPUT_RATE)
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape == (
            1,
            ours.frames_for(wave.shape[-1]),
        )
        assert len(expected.unique()) >= 20  # agreement on a few codes would mean little
        assert (got == expected).float().mean() >= 0.9
        whole_audio = ours.detokenize(expected[None]).audio[0]
        windowed_audio = codec.decode(expected)
    assert isinstance(windowed_audio, torch.Tensor)
    assert windowed_audio.shape == whole_audio.shape == (expected.shape[-1] * 480,)
    noise = (windowed_audio - whole_audio).pow(2).mean()
    snr_db = 10 * torch.log10(whole_audio.pow(2).mean() / noise.clamp(min=1e-20))
    assert snr_db > 10, f"windowed decode {snr_db:.1f} dB from the whole decode"


# ----------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_random_weights_on_real_speech(
    audio_dir: Path, reference_extractor: Any, tmp_path: Path
) -> None:
    """The published architecture, random weights, 4 s of each real recording; reference features.

    The FSQ input is standardised per digit over all clips (random init puts every frame
    on one code). Codes equal, except frames where a reference digit sits within 1e-4 of a
    rounding midpoint (float summation order decides those); audio within 1e-4 of peak.
    """
    import soundfile

    torch.manual_seed(9)
    reference = transformers.NeuCodecModel(transformers.NeuCodecConfig()).eval()
    with torch.no_grad():
        for param in reference.parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.1)
    clips = []
    for name, start in (("speech_en.flac", 0), ("speech_cn.wav", 16000), ("music.wav", 48000)):
        audio, rate = soundfile.read(audio_dir / name, dtype="float32", start=start, frames=4 * INPUT_RATE)
        assert rate == INPUT_RATE
        clips.append(torch.from_numpy(audio))
    captured: list[torch.Tensor] = []
    project_in = reference.quantizer.project_in
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        for clip in clips:
            reference.encode(**reference_extractor([clip]))
    handle.remove()
    values = torch.cat([output.reshape(-1, output.shape[-1]) for output in captured])
    mean, std = values.mean(dim=0), values.std(dim=0)
    with torch.no_grad():
        project_in.weight.div_(std[:, None])
        project_in.bias.sub_(mean).div_(std)
    reference.save_pretrained(tmp_path)
    ours = NeuCodecModel.from_pretrained(tmp_path)
    fsq = reference.quantizer.quantizer
    pre_round: list[torch.Tensor] = []
    for clip in clips:
        # The values the reference's FSQ rounds (it bounds its input once more inside).
        pre_round.clear()
        handle = fsq.register_forward_pre_hook(
            lambda module, args: pre_round.append(module.bound(args[0].float()))
        )
        with torch.no_grad():
            expected = reference(**reference_extractor([clip]))
        handle.remove()
        with torch.inference_mode():
            actual = ours(**_ours_inputs([clip]))
        assert expected.audio_codes.shape[-1] == 200 and expected.audio_codes.unique().numel() >= 100
        differing = (expected.audio_codes != actual.audio_codes)[0, 0].nonzero().flatten().tolist()
        bounded = pre_round[0][0]
        for frame in differing:
            distance = ((bounded[frame] - bounded[frame].floor()) - 0.5).abs().min().item()
            assert distance < 1e-4, f"frame {frame} differs and is no near-tie ({distance:.2e})"
        if not differing:
            _assert_audio_close(actual.audio_values, expected.audio_values)
