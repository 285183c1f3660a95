"""ONNX export and the onnxruntime backend against the PyTorch models, tiny random configs.

Decoder: ``decoder.onnx`` on onnxruntime gives the PyTorch decode within 1e-4 of the
audio's peak, for single items of one frame to a few seconds and for padded batches,
where each item must equal its alone-run (batch = solo through the masks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime as ort
from _asserts import assert_close_to_peak, assert_not_near_zero
from _tiny import perturb_, standardise_fsq_input_, tiny_xcodec2, tiny_xcodec2_dict, tiny_xcodec_dict

from xcodec.base import CodecModel
from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.ssl import HubertConfig
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import ArgumentError
from xcodec.models.distill_neucodec import DistillNeuCodecModel
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.onnx.export import export_onnx
from xcodec.onnx.graphs import OverlapAddISTFT

KINDS = ("xcodec2", "neucodec", "xcodec", "distill_neucodec")
# 1 frame, a few frames, about 3 s at 50 frames/s.
FRAME_COUNTS = (1, 7, 150)


def tiny_model(kind: str) -> CodecModel:
    torch.manual_seed(0)
    if kind == "xcodec2":
        return tiny_xcodec2()
    if kind == "distill_neucodec":
        return tiny_distill_neucodec()
    if kind == "neucodec":
        model: CodecModel = NeuCodecModel(NeuCodecConfig.from_dict(tiny_xcodec2_dict())).eval()
    else:
        model = XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval()
    perturb_(model)
    if isinstance(model, XcodecModel):
        spread_rvq_codes_(model)
    return model


def tiny_distill_neucodec() -> DistillNeuCodecModel:
    """A 0.5 M-parameter DistillNeuCodec (1-layer DistilHuBERT, 12-frame local windows), its FSQ
    input standardised so codes vary."""
    torch.manual_seed(0)
    semantic = HubertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    config = DistillNeuCodecConfig(
        semantic_model_config=semantic,
        semantic_adapter_size=48,
        encoder_dims=(8, 16, 16, 32),
        encoder_feature_dim=32,
        local_window_size=12,
        acoustic_projection_dim=24,
        quantization_dim=96,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=1,
        num_attention_heads=4,
        head_dim=16,
    )
    model = DistillNeuCodecModel(config).eval()
    perturb_(model)
    standardise_fsq_input_(model)  # type: ignore[arg-type]
    return model


def spread_rvq_codes_(model: XcodecModel, seed: int = 1) -> None:
    """Set the first RVQ codebook to embeddings of a noise clip, in place.

    With the tiny config's random codebooks every frame of noise picks one code, so a
    codes comparison could not fail; codebook rows drawn from real embeddings spread them
    (15 of 16 codes on 3 s of noise).
    """
    generator = torch.Generator().manual_seed(seed)
    captured: list[torch.Tensor] = []
    encode = model.quantizer.encode

    def capture(embeddings: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        captured.append(embeddings)
        return encode(embeddings, num_quantizers)

    model.quantizer.encode = capture  # type: ignore[method-assign]
    try:
        with torch.inference_mode():
            model.tokenize(0.1 * torch.randn(1, 2 * model.input_sample_rate, generator=generator))
    finally:
        del model.quantizer.encode
    frames = captured[0][0].T  # (frames, dim)
    embed = model.quantizer.stages[0].codebook.embed
    if frames.shape[0] >= embed.shape[0]:
        pick = torch.randperm(frames.shape[0], generator=generator)[: embed.shape[0]]
        rows = frames[pick]
    else:
        # Full size (1024 codes, 100 frames): frames drawn again, nudged apart.
        pick = torch.randint(0, frames.shape[0], (embed.shape[0],), generator=generator)
        rows = frames[pick] + 0.05 * frames.std() * torch.randn(embed.shape, generator=generator)
    with torch.no_grad():
        embed.copy_(rows)


@pytest.fixture(scope="module", params=KINDS)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CodecModel, Path]:
    model = tiny_model(request.param)
    folder = export_onnx(model, tmp_path_factory.mktemp(f"onnx_{request.param}"), part="decoder")
    return model, folder


def _codes(model: CodecModel, frames: int, seed: int, num_codebooks: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = num_codebooks or model.num_codebooks
    return torch.randint(0, model.codebook_size, (rows, frames), generator=generator)


def _run_decoder(session: Any, codes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    audio, padding_mask = session.run(None, {"audio_codes": codes.numpy(), "audio_codes_mask": mask.numpy()})
    return torch.from_numpy(audio), torch.from_numpy(padding_mask)


def _torch_decode(model: CodecModel, codes: torch.Tensor) -> torch.Tensor:
    """One item (num_codebooks, frames) decoded alone by the PyTorch model -> (samples,)."""
    with torch.inference_mode():
        return model.decode(codes[None]).audio_values[0, 0]  # type: ignore[operator]


def test_config_names_the_codec_and_graph(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "xcodec-onnx"
    assert config["sample_rate"] == model.sample_rate
    assert config["hop_length"] == model.hop_length
    assert config["num_codebooks"] == model.num_codebooks
    session = ort.InferenceSession(str(folder / config["parts"]["decoder"]["file"]))
    assert [i.name for i in session.get_inputs()] == list(config["parts"]["decoder"]["inputs"])
    assert [o.name for o in session.get_outputs()] == list(config["parts"]["decoder"]["outputs"])


@pytest.mark.parametrize("frames", FRAME_COUNTS)
def test_decoder_single_item_matches_torch(exported: tuple[CodecModel, Path], frames: int) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    codes = _codes(model, frames, seed=frames)
    expected = _torch_decode(model, codes)
    audio, padding_mask = _run_decoder(session, codes[None], torch.ones(1, frames, dtype=torch.long))
    assert audio.shape == (1, 1, frames * model.hop_length)
    assert torch.equal(padding_mask, torch.ones(1, frames * model.hop_length, dtype=torch.long))
    assert_not_near_zero(expected)
    assert_close_to_peak(audio[0, 0], expected)


def test_decoder_padded_batch_equals_each_item_alone(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    lengths = [150, 1, 37, 150]
    items = [_codes(model, n, seed=10 + i) for i, n in enumerate(lengths)]
    longest = max(lengths)
    codes = torch.zeros(len(items), model.num_codebooks, longest, dtype=torch.long)
    mask = torch.zeros(len(items), longest, dtype=torch.long)
    for index, item in enumerate(items):
        codes[index, :, : item.shape[1]] = item
        # Codes past an item's end are filler the graph must not read.
        codes[index, :, item.shape[1] :] = model.codebook_size - 1
        mask[index, : item.shape[1]] = 1
    audio, padding_mask = _run_decoder(session, codes, mask)
    hop = model.hop_length
    for index, item in enumerate(items):
        samples = item.shape[1] * hop
        expected = _torch_decode(model, item)
        assert_close_to_peak(audio[index, 0, :samples], expected, what=f"item {index}")
        assert not audio[index, 0, samples:].any(), "audio past the item's end must be zero"
        assert int(padding_mask[index].sum()) == samples
        assert not padding_mask[index, samples:].any()


def test_xcodec_decoder_takes_fewer_codebooks(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    if model.num_codebooks == 1:
        pytest.skip("one codebook")
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    codes = _codes(model, 20, seed=3, num_codebooks=2)
    expected = _torch_decode(model, codes)
    audio, _ = _run_decoder(session, codes[None], torch.ones(1, 20, dtype=torch.long))
    assert_close_to_peak(audio[0, 0], expected)


def test_overlap_add_istft_equals_the_head() -> None:
    """The exportable head against ISTFTHead itself, on inputs whose magnitudes hit the clamp."""
    model = tiny_xcodec2()
    head = model.acoustic_decoder.head
    ours = OverlapAddISTFT(head)
    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 40, head.linear.in_features, generator=generator)
    lengths = torch.tensor([40, 13])
    with torch.inference_mode():
        expected = head(x, lengths)
        actual = ours(x, lengths)
    for index, length in enumerate(lengths.tolist()):
        samples = length * head.hop_length
        assert_close_to_peak(actual[index, 0, :samples], expected[index, 0, :samples], what=f"item {index}")


def test_export_refuses_bad_arguments(tmp_path: Path) -> None:
    model = tiny_xcodec2()
    with pytest.raises(ArgumentError, match="part"):
        export_onnx(model, tmp_path, part="middle")
    with pytest.raises(ArgumentError, match="opset"):
        export_onnx(model, tmp_path, opset=13)


def test_numpy_arrays_are_float32(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    audio, _ = session.run(
        None,
        {
            "audio_codes": _codes(model, 3, seed=1)[None].numpy(),
            "audio_codes_mask": np.ones((1, 3), np.int64),
        },
    )
    assert audio.dtype == np.float32


# ---------------------------------------------------------------- the onnxruntime backend

SRC = Path(__file__).resolve().parents[1] / "src"


def _subprocess_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_backend_decodes_without_torch(exported: tuple[CodecModel, Path], tmp_path: Path) -> None:
    """``xcodec.load(folder).decode`` in a fresh process: torch never imported, audio = PyTorch's."""
    import subprocess
    import sys

    model, folder = exported
    items = [_codes(model, n, seed=20 + n) for n in (40, 9)]
    np.savez(tmp_path / "codes.npz", *[item.numpy() for item in items])
    script = f"""
import sys
import numpy as np
import xcodec
codec = xcodec.load({str(folder)!r})
with np.load({str(tmp_path / "codes.npz")!r}) as npz:
    items = [npz[f"arr_{{i}}"] for i in range(len(npz.files))]
audio = codec.decode(items)
np.savez({str(tmp_path / "audio.npz")!r}, *audio)
assert type(codec).__name__ == "OnnxCodec", type(codec)
assert codec.sample_rate == {model.sample_rate}
print("torch imported:", "torch" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_subprocess_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    with np.load(tmp_path / "audio.npz") as npz:
        decoded = [torch.from_numpy(npz[f"arr_{i}"]) for i in range(len(items))]
    for item, audio in zip(items, decoded, strict=True):
        assert_close_to_peak(audio, _torch_decode(model, item))


def test_backend_reports_bad_codes_and_decodes_the_rest(exported: tuple[CodecModel, Path]) -> None:
    from xcodec.errors import BatchError
    from xcodec.onnx.runtime import OnnxCodec

    model, folder = exported
    codec = OnnxCodec(folder)
    good = _codes(model, 12, seed=4).numpy()
    with pytest.raises(BatchError) as caught:
        codec.decode([good, good + model.codebook_size])
    assert [error.index for error in caught.value.errors] == [1]
    assert "codes[1]" in str(caught.value)
    assert_close_to_peak(
        torch.from_numpy(caught.value.results[0]), _torch_decode(model, torch.from_numpy(good))
    )
    with pytest.raises(ArgumentError, match="encoder"):
        codec.encode(np.zeros(1000, np.float32), sampling_rate=model.input_sample_rate)


def test_cli_decodes_with_an_export_folder(exported: tuple[CodecModel, Path], tmp_path: Path) -> None:
    """``xcodec decode`` with codes naming an export folder writes the PyTorch model's audio; bad files fail alone."""
    import soundfile as sf

    from xcodec.cli import main

    model, out_dir = exported
    codes = _codes(model, 30, seed=8)
    np.savez(tmp_path / "a.npz", audio_codes=codes.numpy().astype(np.int32), model=np.str_(str(out_dir)))
    (tmp_path / "bad.npz").write_bytes(b"not a codes file")
    status = main(["decode", str(tmp_path / "a.npz"), str(tmp_path / "bad.npz"), "-o", str(tmp_path / "wav")])
    assert status == 1  # the bad file fails alone
    audio, rate = sf.read(tmp_path / "wav" / "a.wav", dtype="float32")
    assert rate == model.sample_rate
    expected = _torch_decode(model, codes)
    # The wav holds 16-bit PCM: one quantisation step on top of the 1e-4-of-peak budget.
    assert_close_to_peak(torch.from_numpy(audio), expected, 1e-4 + 1.0 / 32768 / float(expected.abs().max()))


@pytest.mark.slow
def test_cli_export_onnx(tmp_path: Path) -> None:
    """``xcodec export-onnx`` writes a folder ``xcodec.load`` runs; a bad opset exits 2 before any work."""
    from xcodec.cli import main

    model = tiny_xcodec2()
    checkpoint = tmp_path / "tiny"
    model.save_pretrained(checkpoint)
    out_dir = tmp_path / "onnx"
    assert main(["export-onnx", str(checkpoint), str(out_dir), "--opset", "12"]) == 2
    assert not (out_dir / "config.json").exists()
    assert main(["export-onnx", str(checkpoint), str(out_dir), "--part", "decoder"]) == 0
    config = json.loads((out_dir / "config.json").read_text())
    assert config["codec"] == "xcodec2" and list(config["parts"]) == ["decoder"]
    import xcodec

    codec = xcodec.load(out_dir)
    codes = _codes(model, 10, seed=5)
    assert_close_to_peak(torch.from_numpy(codec.decode(codes.numpy())), _torch_decode(model, codes))


def test_int8_decoder_is_close_but_not_exact(exported: tuple[CodecModel, Path], tmp_path: Path) -> None:
    """Dynamic int8 changes the audio (it is lossy) but keeps it near fp32.

    5 dB is a floor for these tiny random decoders (7.8 dB measured for X-Codec2; their
    weights are far from trained ones); the measured cost on the demo checkpoint and
    full-size weights is in bench/RESULTS.md (bench/bench_onnx.py).
    """
    import shutil

    from xcodec.onnx.export import quantize_int8

    model, folder = exported
    if isinstance(model, XcodecModel):
        pytest.skip("X-Codec's decoder is convolutions; dynamic int8 quantises MatMul/Gemm weights only")
    copy = tmp_path / "int8"
    shutil.copytree(folder, copy)
    quantize_int8(copy / "decoder.onnx")
    codes, mask = _codes(model, 50, seed=2)[None], torch.ones(1, 50, dtype=torch.long)
    fp32, _ = _run_decoder(ort.InferenceSession(str(folder / "decoder.onnx")), codes, mask)
    int8, _ = _run_decoder(ort.InferenceSession(str(copy / "decoder.onnx")), codes, mask)
    noise = float((int8 - fp32).square().sum())
    assert noise > 0, "int8 quantisation left the graph unchanged"
    snr = 10 * np.log10(float(fp32.square().sum()) / noise)
    assert snr > 5, f"int8 decoder SNR {snr:.1f} dB"


# Floor for the float16 decoders against float32 ONNX on the tiny random weights (measured
# on 150 frames: X-Codec2 56.9 dB, DistillNeuCodec 57.7 dB, X-Codec 48.6 dB; NeuCodec 55 dB
# before the float32 regions stopped round-tripping through float16). A graph left float32
# fails the "changed" check; a broken conversion (overflow to inf, a wrong cast) falls far
# below. Real weights: bench/RESULTS.md (bench_onnx).
FLOAT16_DECODER_SNR_FLOOR_DB = 35.0


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.square(other.astype(np.float64) - reference).sum())
    return (
        float("inf")
        if noise == 0
        else 10 * np.log10(float(np.square(reference.astype(np.float64)).sum()) / noise)
    )


def test_float16_decoder_is_close_but_not_exact(exported: tuple[CodecModel, Path], tmp_path: Path) -> None:
    """The float16 conversion halves the weights, keeps float32 inputs/outputs and stays near fp32."""
    import shutil

    import onnx

    from xcodec.onnx.export import convert_float16

    model, folder = exported
    copy = tmp_path / "fp16"
    shutil.copytree(folder, copy)
    convert_float16(copy / "decoder.onnx")
    graph = onnx.load(str(copy / "decoder.onnx"))
    weights = list(graph.graph.initializer)
    # The tiny decoders' largest constants are the ISTFT bases, kept float32 on purpose.
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in weights), "no float16 weights"
    session16 = ort.InferenceSession(str(copy / "decoder.onnx"))
    assert [o.type for o in session16.get_outputs()] == ["tensor(float)", "tensor(int64)"]
    lengths = [150, 37]
    codes = torch.stack([_codes(model, 150, seed=30), _codes(model, 150, seed=31)])
    mask = torch.zeros(2, 150, dtype=torch.long)
    for index, length in enumerate(lengths):
        mask[index, :length] = 1
    fp32, _ = _run_decoder(ort.InferenceSession(str(folder / "decoder.onnx")), codes, mask)
    fp16, padding_mask = _run_decoder(session16, codes, mask)
    hop = model.hop_length
    for index, length in enumerate(lengths):
        reference, audio = fp32[index, 0, : length * hop].numpy(), fp16[index, 0, : length * hop].numpy()
        snr = _snr_db(reference, audio)
        assert np.isfinite(snr), "float16 conversion left the decoder unchanged"
        assert snr > FLOAT16_DECODER_SNR_FLOOR_DB, f"item {index}: float16 decoder SNR {snr:.1f} dB"
        assert not fp16[index, 0, length * hop :].any(), "audio past the item's end must stay zero"
        assert int(padding_mask[index].sum()) == length * hop


def test_export_refuses_float16_with_int8(tmp_path: Path) -> None:
    model = tiny_xcodec2()
    with pytest.raises(ArgumentError, match="float16"):
        export_onnx(model, tmp_path, dtype="float16", quantize="int8")
    with pytest.raises(ArgumentError, match="bfloat16"):
        export_onnx(model, tmp_path, dtype="bfloat16")


# Windows short enough that a few seconds of tiny-model codes span several of them.
SHORT_WINDOWS = {"window_seconds": 1.0, "context_seconds": 0.2, "crossfade_seconds": 0.1}


def test_backend_decodes_long_codes_in_the_torch_codecs_windows(exported: tuple[CodecModel, Path]) -> None:
    """Codes longer than one window: OnnxCodec's windowed decode = the PyTorch Codec's, within 1e-4 of peak."""
    from xcodec.api import Codec
    from xcodec.onnx.runtime import OnnxCodec
    from xcodec.windowing import WindowConfig, plan_windows

    model, folder = exported
    windows = WindowConfig(**SHORT_WINDOWS)
    onnx_codec = OnnxCodec(folder, windows=windows)
    torch_codec = Codec(model, windows=windows)
    items = [_codes(model, 170, seed=40), _codes(model, 23, seed=41)]
    window_frames, context_frames, _ = windows.frames(model.frame_rate)
    assert len(plan_windows(170, window_frames, context_frames)) >= 3
    expected = torch_codec.decode(items)
    actual = onnx_codec.decode([item.numpy() for item in items])
    for index, (audio, reference) in enumerate(zip(actual, expected, strict=True)):
        assert audio.shape == tuple(reference.shape)
        assert_close_to_peak(torch.from_numpy(audio), reference, what=f"item {index}")
    # The windows were used: the decoder saw window-long pieces, not the whole item.
    seen: list[int] = []
    decode_many = onnx_codec._decode_many

    def spy(arrays: list[np.ndarray]) -> list[np.ndarray]:
        seen.extend(array.shape[-1] for array in arrays)
        return decode_many(arrays)

    onnx_codec._decode_many = spy  # type: ignore[method-assign]
    onnx_codec.decode(items[0].numpy())
    assert seen and max(seen) == window_frames and len(seen) >= 3


# ---------------------------------------------------------------- encoders (slow: each export takes minutes here)

TIE_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=KINDS)
def exported_encoder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CodecModel, Path]:
    model = tiny_model(request.param)
    folder = export_onnx(model, tmp_path_factory.mktemp(f"onnx_enc_{request.param}"), part="both")
    return model, folder


def _waveforms(lengths: list[int], seed: int) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [(0.1 * generator.standard_normal(n)).astype(np.float32) for n in lengths]


def _fsq_pre_round(model: CodecModel, waveform: np.ndarray) -> torch.Tensor:
    """The values X-Codec2's FSQ rounds for one item alone, (frames, digits), from the PyTorch model."""
    captured: list[torch.Tensor] = []
    fsq = model.quantizer.quantizer  # type: ignore[union-attr]
    handle = fsq.register_forward_pre_hook(
        lambda module, args: captured.append(module.bound(args[0].float()))
    )
    try:
        with torch.inference_mode():
            model.tokenize(torch.from_numpy(waveform)[None])
    finally:
        handle.remove()
    return captured[0][0]


def _assert_codes_equal_alone(model: CodecModel, folder: Path, waveforms: list[np.ndarray]) -> None:
    """ONNX codes of a padded batch = each item's PyTorch codes alone, but at proven near-ties (capped share)."""
    from _asserts import assert_codes_vary, assert_tie_share

    from xcodec.onnx.runtime import OnnxCodec

    codec = OnnxCodec(folder)
    actual = codec.encode(waveforms, sampling_rate=model.input_sample_rate)
    differing = total = 0
    for waveform, codes in zip(waveforms, actual, strict=True):
        with torch.inference_mode():
            result = model.tokenize(torch.from_numpy(waveform)[None])
        expected = result.audio_codes[0, :, : int(result.code_lengths[0])]
        assert codes.shape == tuple(expected.shape)
        total += expected.numel()
        mismatch = (torch.from_numpy(codes) != expected).nonzero().tolist()
        if mismatch:
            assert model.num_codebooks == 1, f"X-Codec codes differ at {mismatch[:5]}"
            distance = (lambda v: ((v - v.floor()) - 0.5).abs())(_fsq_pre_round(model, waveform))
            for _, frame in mismatch:
                assert float(distance[frame].min()) < TIE_TOLERANCE, (
                    f"frame {frame} differs and is not a near-tie"
                )
            differing += len(mismatch)
    assert_codes_vary(torch.from_numpy(np.concatenate([c.reshape(-1) for c in actual])), min_distinct=4)
    assert_tie_share(differing, total, what="ONNX encoder codes")


@pytest.mark.slow
def test_encoder_codes_equal_torch_alone(exported_encoder: tuple[CodecModel, Path]) -> None:
    """ONNX codes of a padded batch = each item's PyTorch codes alone, but at proven near-ties (capped share)."""
    model, folder = exported_encoder
    _assert_codes_equal_alone(model, folder, _waveforms([16000 * 3, 400, 7001, 16000], seed=3))


# ---------------------------------------------------------------- full-size configs (slow: exports take long here)

FULL_SIZE_KINDS = ("xcodec2", "neucodec", "distill_neucodec", "xcodec")


def full_size_model(kind: str) -> CodecModel:
    """A random full-size model (the published configs), its quantiser input spread so codes vary."""
    from xcodec.configs.xcodec2 import Xcodec2Config
    from xcodec.models.xcodec2 import Xcodec2Model

    torch.manual_seed(0)
    model: CodecModel
    if kind == "xcodec2":
        model = Xcodec2Model(Xcodec2Config())
    elif kind == "neucodec":
        model = NeuCodecModel(NeuCodecConfig())
    elif kind == "distill_neucodec":
        model = DistillNeuCodecModel(DistillNeuCodecConfig())
    else:
        model = XcodecModel(XcodecConfig())
    model.eval()
    if isinstance(model, XcodecModel):
        spread_rvq_codes_(model)
    else:
        standardise_fsq_input_(model)  # type: ignore[arg-type]
    return model


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_SIZE_KINDS)
def test_full_size_decoder_matches_torch(kind: str, tmp_path: Path) -> None:
    """Full-size decoder graph: a padded batch (250 and 37 frames) within 1e-4 of each item's PyTorch decode alone."""
    model = full_size_model(kind)
    folder = export_onnx(model, tmp_path / kind, part="decoder")
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    lengths = [250, 37]
    items = [_codes(model, n, seed=50 + i) for i, n in enumerate(lengths)]
    codes = torch.zeros(2, model.num_codebooks, 250, dtype=torch.long)
    mask = torch.zeros(2, 250, dtype=torch.long)
    for index, item in enumerate(items):
        codes[index, :, : item.shape[1]] = item
        mask[index, : item.shape[1]] = 1
    audio, _ = _run_decoder(session, codes, mask)
    for index, item in enumerate(items):
        expected = _torch_decode(model, item)
        assert_not_near_zero(expected)
        assert_close_to_peak(audio[index, 0, : expected.shape[-1]], expected, what=f"{kind} item {index}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_SIZE_KINDS)
def test_full_size_encoder_codes_match_torch(kind: str, tmp_path: Path, audio_dir: Path) -> None:
    """Full-size encoder graph on real speech and noise, padded batch: each item's PyTorch codes alone (near-tie rule)."""
    import soundfile as sf
    import soxr

    model = full_size_model(kind)
    folder = export_onnx(model, tmp_path / kind, part="encoder")
    speech, rate = sf.read(audio_dir / "speech_en.flac", dtype="float32", always_2d=True)
    speech = soxr.resample(speech.mean(axis=1), rate, model.input_sample_rate).astype(np.float32)
    _assert_codes_equal_alone(model, folder, [speech, *_waveforms([7001, 400], seed=4)])


@pytest.mark.slow
def test_backend_encodes_long_audio_in_the_torch_codecs_windows(
    exported_encoder: tuple[CodecModel, Path],
) -> None:
    """Audio longer than one window: OnnxCodec's windowed codes = the PyTorch Codec's, but at
    proven near-ties (each frame's pre-rounding values taken from the window that kept it)."""
    from _asserts import assert_tie_share

    from xcodec.api import Codec
    from xcodec.onnx.runtime import OnnxCodec
    from xcodec.windowing import WindowConfig, plan_windows

    model, folder = exported_encoder
    windows = WindowConfig(**SHORT_WINDOWS)
    waveform = _waveforms([int(3.3 * model.input_sample_rate)], seed=12)[0]
    hop = model.input_hop_length
    window_frames, context_frames, _ = windows.frames(model.frame_rate)
    plan = plan_windows(-(-waveform.shape[-1] // hop), window_frames, context_frames)
    assert len(plan) >= 3
    actual = OnnxCodec(folder, windows=windows).encode(waveform, sampling_rate=model.input_sample_rate)
    expected = Codec(model, windows=windows).encode(torch.from_numpy(waveform), model.input_sample_rate)
    assert actual.shape == tuple(expected.shape)
    mismatch = (torch.from_numpy(actual) != expected).nonzero().tolist()
    if mismatch:
        assert model.num_codebooks == 1, f"X-Codec codes differ at {mismatch[:5]}"
        for _, frame in mismatch:
            window = next(
                w for w in plan if w.keep_start <= frame and (w.keep_stop is None or frame < w.keep_stop)
            )
            pre_round = _fsq_pre_round(model, waveform[window.start * hop : window.stop * hop])
            distance = ((pre_round - pre_round.floor()) - 0.5).abs()
            assert float(distance[frame - window.start].min()) < TIE_TOLERANCE, (
                f"frame {frame} is not a near-tie"
            )
    assert_tie_share(len(mismatch), expected.numel(), what="windowed ONNX encoder codes")


@pytest.mark.slow
def test_backend_round_trip_without_torch(exported_encoder: tuple[CodecModel, Path], tmp_path: Path) -> None:
    """encode (a wav file and an array) then decode with ``xcodec.load(folder)``; torch never imported."""
    import subprocess
    import sys

    import soundfile as sf

    model, folder = exported_encoder
    waveform = _waveforms([12000], seed=9)[0]
    sf.write(tmp_path / "a.wav", waveform, model.input_sample_rate, subtype="FLOAT")
    script = f"""
import sys
import numpy as np
import xcodec
codec = xcodec.load({str(folder)!r})
codes = codec.encode([{str(tmp_path / "a.wav")!r}])[0]
audio = codec.decode(codes)
np.savez({str(tmp_path / "out.npz")!r}, codes=codes, audio=audio)
print("torch imported:", "torch" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_subprocess_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "torch imported: False" in result.stdout
    with np.load(tmp_path / "out.npz") as npz:
        codes, audio = npz["codes"], npz["audio"]
    with torch.inference_mode():
        expected = model.tokenize(torch.from_numpy(waveform)[None]).audio_codes[0]
    assert torch.equal(torch.from_numpy(codes), expected)
    assert_close_to_peak(torch.from_numpy(audio), _torch_decode(model, expected))


def test_load_dispatches_export_folders(exported: tuple[CodecModel, Path]) -> None:
    import xcodec
    from xcodec.onnx.runtime import OnnxCodec

    model, folder = exported
    codec = xcodec.load(folder)
    assert isinstance(codec, OnnxCodec)
    assert (codec.sample_rate, codec.hop_length, codec.num_codebooks) == (
        model.sample_rate,
        model.hop_length,
        model.num_codebooks,
    )
    with pytest.raises(ArgumentError, match="device"):
        xcodec.load(folder, device="cuda")
    with pytest.raises(ArgumentError, match="backend"):
        xcodec.load(folder, backend="tensorrt")
