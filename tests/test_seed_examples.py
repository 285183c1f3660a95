"""The usage examples of the documentation this package mirrors, run as written.

Sources (../shared/seeds/): the Transformers docs of X-Codec2 (older page, ``raw_audio=``
and ``encode(input_values)`` without features) and of X-Codec, and the model card of the
Transformers-native X-Codec2 (single item, batch, ``torch.compile``). Each test is the
example's code with only these changes:

- ``from transformers import ...`` -> ``from xcodec import ...``;
- the hub ids -> tiny random checkpoints written by Transformers' ``save_pretrained``
  (weights perturbed so the codes vary), with a ``preprocessor_config.json`` as on the hub;
- ``load_dataset("hf-internal-testing/librispeech_asr_dummy", ...)`` -> the real
  recordings in ../shared/audio (``dataset[i]["audio"]["array"]`` keeps its shape);
- the ``print`` lines -> asserts of what they print (shapes for these inputs), plus what
  the example implies: forward equals encode then decode, the tokens equal Transformers'
  on the same checkpoint and inputs, and they vary.

Also here: the ``device_map`` / ``dtype`` arguments the examples pass, beyond their values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _oracle import require_oracle

transformers = require_oracle("transformers")

from xcodec import AutoFeatureExtractor, AutoModel, Xcodec2Model, XcodecModel  # noqa: E402
from xcodec.audio import load_audio  # noqa: E402
from xcodec.features import Xcodec2FeatureExtractor  # noqa: E402
from xcodec.placement import PlacementError  # noqa: E402

SAMPLE_RATE = 16000
HOP = 320
# Audio agreement is relative to the signal's peak (a random decoder's output level is arbitrary).
AUDIO_TOLERANCE = 1e-4
# An FSQ value this close to a rounding midpoint may round either way in two implementations.
TIE_TOLERANCE = 1e-4
# The recordings standing in for librispeech_asr_dummy rows, in dataset order.
RECORDINGS = ("speech_en.flac", "speech_en_nq_1.wav", "speech_cn.wav")
# Rows are cut to MAX_SECONDS, MAX_SECONDS - STEP_SECONDS, ... (see ``dataset``).
MAX_SECONDS = 2.4
STEP_SECONDS = 0.7


# ---------------------------------------------------------------------------------------
# Stand-ins for the hub checkpoints and the data set
# ---------------------------------------------------------------------------------------


def _tiny_xcodec2_reference(calibration_audio: np.ndarray) -> Any:
    """A Transformers Xcodec2Model, tiny, with perturbed weights that spread over the FSQ codes.

    A random model squeezes the values the FSQ rounds into a narrow range (one or two codes
    for all of speech), so the projection into the quantiser is standardised per dimension
    on ``calibration_audio``: every code digit then varies on speech.
    """
    torch.manual_seed(0)
    config = transformers.Xcodec2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        encoder_hidden_size=8,
        semantic_model_config=transformers.Wav2Vec2BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            conv_depthwise_kernel_size=5,
        ),
        quantization_dim=96,
        quantization_levels=[4, 4, 4, 4],
    )
    model = transformers.Xcodec2Model(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * (0.2 if param.dim() == 1 else 0.05))
        inputs = Xcodec2FeatureExtractor()(calibration_audio, sampling_rate=SAMPLE_RATE)
        project_in = model.quantizer.project_in
        captured: list[torch.Tensor] = []
        handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
        try:
            model.encode(**inputs)
        finally:
            handle.remove()
        values = captured[0].reshape(-1, project_in.out_features)
        mean, std = values.mean(dim=0), values.std(dim=0)
        project_in.weight.div_(std[:, None])
        project_in.bias.sub_(mean).div_(std)
    return model


def _tiny_xcodec_reference() -> Any:
    """A Transformers XcodecModel with a tiny HuBERT teacher, perturbed weights, random codebooks."""
    torch.manual_seed(0)
    config = transformers.XcodecConfig(
        acoustic_model_config={"encoder_hidden_size": 2, "decoder_hidden_size": 32, "hidden_size": 8},
        semantic_model_config=transformers.HubertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            conv_dim=[8] * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        ),
        codebook_size=16,
        target_bandwidths=[0.2, 0.4, 0.8, 1.6],
    )
    model = transformers.XcodecModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        for name, buffer in model.named_buffers():
            if name.endswith(("codebook.embed", "codebook.embed_avg")):
                buffer.copy_(torch.randn_like(buffer))
            elif name.endswith("codebook.cluster_size"):
                buffer.uniform_(0, 10)
    return model


@pytest.fixture(scope="module")
def xcodec2_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, dataset: list[dict[str, Any]]
) -> tuple[Any, str]:
    """(Transformers reference, folder) standing in for ``HKUSTAudio/xcodec2-hf``."""
    reference = _tiny_xcodec2_reference(dataset[0]["audio"]["array"][: 2 * SAMPLE_RATE])
    folder = tmp_path_factory.mktemp("xcodec2_hf")
    reference.save_pretrained(folder)
    # The hub repo ships one; Transformers' extractor cannot be built here (no torchaudio),
    # and ours writes the same file.
    Xcodec2FeatureExtractor().save_pretrained(folder)
    return reference, str(folder)


@pytest.fixture(scope="module")
def xcodec_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    """(Transformers reference, folder) standing in for ``hf-audio/xcodec-hubert-librispeech``."""
    reference = _tiny_xcodec_reference()
    folder = tmp_path_factory.mktemp("xcodec_hubert")
    reference.save_pretrained(folder)
    transformers.DacFeatureExtractor(hop_length=HOP, sampling_rate=SAMPLE_RATE).save_pretrained(folder)
    return reference, str(folder)


@pytest.fixture(scope="module")
def dataset(audio_dir: Path) -> list[dict[str, Any]]:
    """Rows shaped like ``librispeech_asr_dummy`` after ``cast_column("audio", Audio(16000))``."""
    rows: list[dict[str, Any]] = []
    for name in RECORDINGS:
        # Cut to unequal lengths of 1-2.4 s (the data set's rows are 2-10 s): a fast suite
        # on 2 CPU cores, and a batch of two rows is padded as in the examples.
        num_samples = int((MAX_SECONDS - STEP_SECONDS * len(rows)) * SAMPLE_RATE)
        waveform = load_audio(audio_dir / name, target_sample_rate=SAMPLE_RATE).waveform[:num_samples]
        rows.append(
            {"audio": {"array": np.asarray(waveform, dtype=np.float32), "sampling_rate": SAMPLE_RATE}}
        )
    return rows


# ---------------------------------------------------------------------------------------
# What the examples imply
# ---------------------------------------------------------------------------------------


def padded_samples(num_samples: int) -> int:
    """X-Codec2's padded length of one item: its samples plus the "always pad" one, rounded up to the hop."""
    return -(-(num_samples + 1) // HOP) * HOP


def assert_codes_vary(audio_codes: torch.Tensor) -> None:
    """A pipeline that maps everything to one code would pass every shape check."""
    assert torch.unique(audio_codes).numel() >= 8, torch.unique(audio_codes)


def assert_audio_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    actual, expected = actual.detach().float(), expected.detach().float()
    peak = float(expected.abs().max())
    assert peak > 0
    error = float((actual - expected).abs().max())
    assert error <= AUDIO_TOLERANCE * peak, (error, peak)


def assert_xcodec2_reference_codes(reference: Any, inputs: Any, actual: torch.Tensor) -> None:
    """Our codes equal Transformers' for the same extractor output, except at proven near-ties.

    Transformers' extractor needs torchaudio, so both models get ours (pinned against it
    in tests/test_features.py). Two float32 implementations may round a value lying on an
    FSQ rounding midpoint differently: a differing frame must have a digit within
    ``TIE_TOLERANCE`` of a midpoint in the reference, and at most 1% of frames may differ.
    """
    fsq = reference.quantizer.quantizer
    captured: list[torch.Tensor] = []
    handle = fsq.register_forward_pre_hook(
        lambda module, args: captured.append(module.bound(args[0].float()))
    )
    try:
        with torch.no_grad():
            expected = reference.encode(**{name: value.cpu() for name, value in inputs.items()}).audio_codes
    finally:
        handle.remove()
    actual = actual.cpu()
    assert actual.shape == expected.shape
    differing = (actual != expected)[:, 0, :].nonzero().tolist()
    assert len(differing) <= 0.01 * expected.numel(), differing
    distance_to_midpoint = ((captured[0] - captured[0].floor()) - 0.5).abs()
    for item, frame in differing:
        nearest = float(distance_to_midpoint[item, frame].min())
        assert nearest < TIE_TOLERANCE, f"item {item} frame {frame}: not a near-tie ({nearest:.2e})"


# ---------------------------------------------------------------------------------------
# X-Codec2, Transformers docs (older page): raw_audio=, encode(input_values) without features
# ---------------------------------------------------------------------------------------


def test_xcodec2_docs_usage_example(
    xcodec2_checkpoint: tuple[Any, str], dataset: list[dict[str, Any]]
) -> None:
    reference, model_id = xcodec2_checkpoint

    torch_device = "cuda" if torch.cuda.is_available() else "cpu"

    # load model and feature extractor
    model = Xcodec2Model.from_pretrained(model_id).to(torch_device).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)

    # load data
    audio = dataset[0]["audio"]["array"]

    # prepare data
    inputs = feature_extractor(
        raw_audio=audio, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
    ).to(torch_device)

    # encoder and decode
    audio_codes = model.encode(inputs["input_values"]).audio_codes
    audio_values = model.decode(audio_codes).audio_values
    encoded, decoded = audio_codes, audio_values
    # or the equivalent with a forward pass
    model_output = model(inputs["input_values"])
    audio_codes = model_output.audio_codes
    audio_values = model_output.audio_values

    num_samples = padded_samples(len(audio))
    assert inputs["input_values"].shape == (1, 1, num_samples)
    assert encoded.shape == (1, 1, num_samples // HOP)
    assert decoded.shape == (1, 1, num_samples)
    assert_codes_vary(encoded)
    # Features computed inside encode give the tokens the extractor's features give ...
    with torch.no_grad():
        assert torch.equal(encoded, model.encode(**inputs).audio_codes)
    # ... which are Transformers' tokens.
    assert_xcodec2_reference_codes(reference, inputs, encoded)
    assert torch.equal(audio_codes, encoded)
    assert_audio_close(audio_values, decoded)


# ---------------------------------------------------------------------------------------
# X-Codec2, model card of the Transformers-native checkpoint
# ---------------------------------------------------------------------------------------


def test_xcodec2_model_card_usage_example(
    xcodec2_checkpoint: tuple[Any, str], dataset: list[dict[str, Any]]
) -> None:
    reference, model_id = xcodec2_checkpoint

    model = AutoModel.from_pretrained(model_id, device_map="auto")
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)

    audio = dataset[0]["audio"]["array"]
    inputs = feature_extractor(
        audio=audio, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
    ).to(model.device, model.dtype)
    num_samples = padded_samples(len(audio))
    # print("Input waveform shape:", inputs["input_values"].shape)
    assert inputs["input_values"].shape == (1, 1, num_samples)

    # encoder and decoder
    audio_codes = model.encode(**inputs).audio_codes
    # print("Audio codes shape:", audio_codes.shape)
    assert audio_codes.shape == (1, 1, num_samples // HOP)
    audio_values = model.decode(audio_codes).audio_values
    # print("Audio values shape:", audio_values.shape)
    assert audio_values.shape == (1, 1, num_samples)

    encoded, decoded = audio_codes, audio_values

    # Equivalently, you can do encoding and decoding in one step
    model_output = model(**inputs)
    audio_codes = model_output.audio_codes
    audio_values = model_output.audio_values

    assert isinstance(model, Xcodec2Model)
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert model.dtype == torch.float32
    assert inputs["padding_mask"].dtype == torch.int32  # .to(device, dtype) casts floats only
    assert_codes_vary(encoded)
    assert_xcodec2_reference_codes(reference, inputs, encoded)
    assert torch.equal(audio_codes, encoded)
    assert_audio_close(audio_values, decoded)


def test_xcodec2_model_card_batch_example(
    xcodec2_checkpoint: tuple[Any, str], dataset: list[dict[str, Any]]
) -> None:
    reference, model_id = xcodec2_checkpoint

    batch_size = 2
    model = AutoModel.from_pretrained(model_id, device_map="auto")
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)

    audios = [dataset[i]["audio"]["array"] for i in range(batch_size)]
    inputs = feature_extractor(
        audio=audios, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
    ).to(model.device, model.dtype)
    num_samples = max(padded_samples(len(a)) for a in audios)
    # print("Input waveform shape:", inputs["input_values"].shape)
    assert inputs["input_values"].shape == (2, 1, num_samples)

    # encoder and decoder
    encoder_output = model.encode(**inputs)
    audio_codes = encoder_output.audio_codes
    # print("Audio codes shape:", audio_codes.shape)
    assert audio_codes.shape == (2, 1, num_samples // HOP)
    audio_values = model.decode(audio_codes).audio_values
    # print("Audio values shape:", audio_values.shape)
    assert audio_values.shape == (2, 1, num_samples)

    encoded, decoded = audio_codes, audio_values

    # Equivalently, you can do encoding and decoding in one step
    model_output = model(**inputs)
    audio_codes = model_output.audio_codes
    audio_values = model_output.audio_values

    assert padded_samples(len(audios[0])) != padded_samples(len(audios[1]))  # a padded batch
    assert_codes_vary(encoded)
    assert_xcodec2_reference_codes(reference, inputs, encoded)
    assert torch.equal(audio_codes, encoded)
    assert_audio_close(audio_values, decoded)


def test_xcodec2_model_card_torch_compile_example(
    xcodec2_checkpoint: tuple[Any, str], dataset: list[dict[str, Any]]
) -> None:
    _, model_id = xcodec2_checkpoint
    # Inductor compiles on 2 CPU cores here: the items are the recordings' first 0.4-1 s.
    rows = [{"audio": {"array": row["audio"]["array"][: 6400 + 3000 * i]}} for i, row in enumerate(dataset)]
    rows.append({"audio": {"array": dataset[0]["audio"]["array"][16000:20000]}})
    dataset = rows
    torch._dynamo.reset()

    batch_size = 4
    model = AutoModel.from_pretrained(model_id, device_map="auto")
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)

    audios = [dataset[i]["audio"]["array"] for i in range(batch_size)]
    inputs = feature_extractor(
        audio=audios, sampling_rate=feature_extractor.sampling_rate, padding=True, return_tensors="pt"
    ).to(model.device, model.dtype)

    compiled_model = torch.compile(model, fullgraph=True)

    # Warmup (includes compilation on first call)
    for _ in range(10):
        with torch.inference_mode():
            _ = compiled_model(**inputs)

    with torch.inference_mode():
        output = compiled_model(**inputs)
    # print("Audio values shape:", output.audio_values.shape)
    num_samples = max(padded_samples(len(a)) for a in audios)
    assert output.audio_values.shape == (4, 1, num_samples)

    with torch.inference_mode():
        eager = model(**inputs)
    assert_codes_vary(eager.audio_codes)
    assert torch.equal(output.audio_codes, eager.audio_codes)
    assert_audio_close(output.audio_values, eager.audio_values)


# ---------------------------------------------------------------------------------------
# X-Codec, Transformers docs
# ---------------------------------------------------------------------------------------


def test_xcodec_docs_usage_example(
    xcodec_checkpoint: tuple[Any, str],
    dataset: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, model_id = xcodec_checkpoint
    monkeypatch.chdir(tmp_path)  # the example writes its wav files to the working directory
    ds = dataset

    import soundfile as sf

    model = XcodecModel.from_pretrained(model_id, dtype="auto")
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_id)

    audio_sample = ds[-1]["audio"]["array"]
    inputs = feature_extractor(
        raw_audio=audio_sample, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"
    )

    encoder_outputs = model.encode(inputs["input_values"])
    decoder_outputs = model.decode(encoder_outputs.audio_codes)
    audio_values = decoder_outputs.audio_values
    audio_values = model(inputs["input_values"]).audio_values

    original = audio_sample
    reconstruction = audio_values[0].cpu().detach().numpy()
    sampling_rate = feature_extractor.sampling_rate

    sf.write("original.wav", original, sampling_rate)
    sf.write("reconstruction.wav", reconstruction.T, sampling_rate)

    # dtype="auto": the checkpoint's config.json says float32.
    assert json.loads((Path(model_id) / "config.json").read_text())["dtype"] == "float32"
    assert model.dtype == torch.float32
    num_samples = -(-len(audio_sample) // HOP) * HOP
    assert inputs["input_values"].shape == (1, 1, num_samples)
    audio_codes = encoder_outputs.audio_codes
    # The highest bandwidth: 8 codebooks; one frame per hop plus the semantic teacher's extra one.
    assert audio_codes.shape == (1, 8, (num_samples - HOP // 4) // HOP + 1)
    assert_codes_vary(audio_codes)
    with torch.no_grad():
        expected = reference.encode(inputs["input_values"]).audio_codes
    assert torch.equal(audio_codes, expected)
    assert_audio_close(audio_values, decoder_outputs.audio_values[..., :num_samples])
    written, rate = sf.read("reconstruction.wav", dtype="float32")
    assert rate == sampling_rate and written.shape == (num_samples,)
    assert sf.read("original.wav")[0].shape == (len(audio_sample),)


# ---------------------------------------------------------------------------------------
# device_map / dtype as the examples pass them, and the values around them
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_map", [None, "auto", "cpu", torch.device("cpu")], ids=repr)
def test_device_map_values(xcodec2_checkpoint: tuple[Any, str], device_map: Any) -> None:
    _, model_id = xcodec2_checkpoint
    if device_map == "auto" and torch.cuda.is_available():
        pytest.skip("checks the CPU fallback of device_map='auto'")
    model = AutoModel.from_pretrained(model_id, device_map=device_map)
    assert model.device == torch.device("cpu")
    assert (
        Xcodec2Model.from_pretrained(model_id, device_map=device_map, parts="decoder").loaded_parts
        == "decoder"
    )


def test_device_map_errors(xcodec2_checkpoint: tuple[Any, str]) -> None:
    _, model_id = xcodec2_checkpoint
    with pytest.raises(PlacementError, match="dict"):
        AutoModel.from_pretrained(model_id, device_map={"": 0})  # type: ignore[arg-type]
    with pytest.raises(PlacementError, match="not a device"):
        Xcodec2Model.from_pretrained(model_id, device_map="gpu7")
    with pytest.raises(PlacementError, match="disagree"):
        Xcodec2Model.from_pretrained(model_id, device="cpu", device_map="meta")
    if not torch.cuda.is_available():
        with pytest.raises(PlacementError, match="CUDA is not available"):
            AutoModel.from_pretrained(model_id, device_map="cuda:1")


def test_dtype_values(xcodec_checkpoint: tuple[Any, str], tmp_path: Path) -> None:
    _, model_id = xcodec_checkpoint
    assert XcodecModel.from_pretrained(model_id).dtype == torch.float32
    assert AutoModel.from_pretrained(model_id, dtype="bfloat16").dtype == torch.bfloat16
    assert XcodecModel.from_pretrained(model_id, dtype=torch.float16).dtype == torch.float16
    assert XcodecModel.from_pretrained(model_id, dtype="torch.float64").dtype == torch.float64
    # "auto" reads config.json: ``dtype`` (Transformers 5), or ``torch_dtype`` (older files),
    # float32 where neither is stated.
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in Path(model_id).iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    for stated, expected in (
        ({"dtype": "bfloat16"}, torch.bfloat16),
        ({"torch_dtype": "float16"}, torch.float16),
        ({}, torch.float32),
    ):
        values = {k: v for k, v in config.items() if k not in ("dtype", "torch_dtype")} | stated
        (copy / "config.json").write_text(json.dumps(values))
        model = AutoModel.from_pretrained(copy, dtype="auto")
        assert model.dtype == expected, stated
        assert all(p.dtype == expected for p in model.parameters())
    with pytest.raises(PlacementError, match="floating"):
        XcodecModel.from_pretrained(model_id, dtype=torch.int8)
    with pytest.raises(PlacementError, match="not a torch dtype"):
        XcodecModel.from_pretrained(model_id, dtype="float33")


def test_xcodec2_encode_without_features_uses_the_checkpoint_preprocessor(
    xcodec2_checkpoint: tuple[Any, str], dataset: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Features built inside encode follow preprocessor_config.json; a padded batch with its mask
    gets the extractor's features item by item."""
    _, model_id = xcodec2_checkpoint
    model = Xcodec2Model.from_pretrained(model_id)
    assert model.preprocessor == Xcodec2FeatureExtractor()
    extractor = AutoFeatureExtractor.from_pretrained(model_id)
    audios = [row["audio"]["array"][: 4000 + 2500 * i] for i, row in enumerate(dataset)]
    inputs = extractor(audio=audios, sampling_rate=SAMPLE_RATE)
    with torch.no_grad():
        given = model.encode(**inputs)
        computed = model.encode(inputs["input_values"], padding_mask=inputs["padding_mask"])
        forward = model(inputs["input_values"], padding_mask=inputs["padding_mask"])
    assert torch.equal(computed.audio_codes, given.audio_codes)
    assert torch.equal(forward.audio_codes, given.audio_codes)

    # A checkpoint whose preprocessor pads the mel features differently gets different features.
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in Path(model_id).iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    Xcodec2FeatureExtractor(padding_value=-3.0).save_pretrained(copy)
    other = Xcodec2Model.from_pretrained(copy)
    assert other.preprocessor is not None and other.preprocessor.padding_value == -3.0
    features, mask = other._features_from_audio(inputs["input_values"], inputs["padding_mask"])
    assert bool((features[0, int(mask[0].sum()) :] == -3.0).all())
