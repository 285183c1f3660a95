"""Drop-in replacements (``xcodec.compat``) against the original packages' own code.

``xcodec.compat.xcodec2.XCodec2Model`` is compared with ``xcodec2`` 0.1.5's
``XCodec2Model`` (tests/_xcodec2_original_harness.py) and ``xcodec.compat.neucodec.NeuCodec``
/ ``DistillNeuCodec`` with ``neucodec`` 0.0.6's (tests/_neucodec_original_harness.py), each on
the same small random weights, saved in the package's layout and loaded by the compat class:
codes equal, audio within 1e-4 of its peak, codes asserted to vary. Where the packages
fail (batches in xcodec2, 16 kHz paths in neucodec) the failure is pinned and ours is
checked against each item alone. Two scripts written as Llasa's and NeuTTS's published
code (prompt -> ``<|s_N|>`` / ``<|speech_N|>`` strings -> parse -> decode) run with the
package and with the compat class, only the import line differing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _oracle import require_oracle

require_oracle("transformers")

from _neucodec_original_harness import (  # noqa: E402
    NeuCodecSizes,
    SincResample,
    build_original_distill_neucodec,
    build_original_neucodec,
    save_semantic_model,
)
from _neucodec_original_harness import save_original_layout as save_neucodec_layout  # noqa: E402
from _xcodec2_original_harness import build_original_model  # noqa: E402
from test_xcodec2_original import SMALL as XCODEC2_SIZES  # noqa: E402
from test_xcodec2_original import save_original_layout as save_xcodec2_layout  # noqa: E402

from xcodec.audio import resample  # noqa: E402
from xcodec.checkpoints.neucodec import save_neucodec  # noqa: E402
from xcodec.checkpoints.xcodec2_original import convert_original_xcodec2  # noqa: E402
from xcodec.compat._common import sinc_resample  # noqa: E402
from xcodec.compat.neucodec import DistillNeuCodec, NeuCodec  # noqa: E402
from xcodec.compat.xcodec2 import XCodec2Model  # noqa: E402
from xcodec.configs.neucodec import NeuCodecConfig  # noqa: E402
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig  # noqa: E402
from xcodec.errors import ArgumentError, XcodecError  # noqa: E402

AUDIO_TOLERANCE = 1e-4  # of the package's audio peak
# Two item lengths for every test: each new input shape costs a one-off kernel set-up
# (about 1-2 s of CPU per model here), more than the tiny models' computation.
LONG, SHORT = 4800, 3200  # 0.3 s (a whole number of hops) and 0.2 s
SHARED_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "audio" / "speech_en.flac"
NEUCODEC_SIZES = NeuCodecSizes(
    encoder_ngf=4,
    hidden_size=64,
    decoder_layers=2,
    decoder_heads=4,
    semantic_hidden_size=32,
    semantic_layers=17,  # one past the layer read, so the cut to 16 is exercised
    semantic_heads=2,
    semantic_intermediate_size=64,
)


def _band_limited(samples: int, seed: int) -> torch.Tensor:
    """(samples,) float32 at 16 kHz with nothing above 4 kHz (resamplers agree on it)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    freqs = 100 + 3900 * torch.rand(12, generator=generator)
    return 0.05 * torch.sin(
        2 * torch.pi * freqs[:, None] * t[None] + torch.rand(12, 1, generator=generator) * 6
    ).sum(0)


def _speech(samples: int, seed: int) -> torch.Tensor:
    """(samples,) float32: noise with a moving pitch, loud enough to spread the codes."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * (150 + 100 * t) * t)
    return tone + 0.2 * torch.randn(samples, generator=generator)


# --------------------------------------------------------------------------- X-Codec2
@pytest.fixture(scope="module")
def xcodec2_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The package's model and ours from its saved original layout (and from the Transformers layout)."""
    original = build_original_model(XCODEC2_SIZES, seed=0)
    folder = save_xcodec2_layout(original, XCODEC2_SIZES, tmp_path_factory.mktemp("xcodec2") / "original")
    converted = tmp_path_factory.mktemp("xcodec2") / "hf"
    convert_original_xcodec2(folder, converted)
    return {
        "original": original,
        "ours": XCodec2Model.from_pretrained(folder),
        "converted": converted,
        "folder": folder,
    }


# A whole number of hops (the package still pads a whole hop) and not.
@pytest.mark.parametrize("samples", [LONG, pytest.param(5111, marks=pytest.mark.slow)])
def test_xcodec2_encode_decode_forward_equal_the_package(xcodec2_pair: dict[str, Any], samples: int) -> None:
    original, ours = xcodec2_pair["original"], xcodec2_pair["ours"]
    wave = _speech(samples, seed=samples)[None]
    expected = original.encode_code(wave)
    codes = ours.encode_code(wave)
    assert codes.shape == (1, 1, samples // 320 + 1)
    assert codes.dtype == expected.dtype
    assert_codes_vary(expected, min_distinct=6)
    assert torch.equal(codes, expected)
    assert torch.equal(ours.encode_code(wave[0]), expected)  # (samples,) is one item
    with torch.no_grad():
        expected_audio = original.decode_code(expected)
        expected_forward = original(wave)
    audio = ours.decode_code(codes)
    assert audio.shape == expected_audio.shape == (1, 1, codes.shape[-1] * 320)
    assert not audio.requires_grad
    assert_close_to_peak(audio, expected_audio, AUDIO_TOLERANCE)
    with torch.no_grad():
        assert_close_to_peak(ours(wave), expected_forward, AUDIO_TOLERANCE, what="forward")


def test_xcodec2_both_layouts_load_the_same_model(xcodec2_pair: dict[str, Any]) -> None:
    wave = _speech(LONG, seed=3)[None]
    hf = XCodec2Model.from_pretrained(xcodec2_pair["converted"], torch_dtype=torch.float32)
    assert torch.equal(hf.encode_code(wave), xcodec2_pair["ours"].encode_code(wave))
    # sample_rate= resamples (the package's feature extractor refuses other rates).
    wave_24k = resample(wave, 16000, 24000)
    assert torch.equal(
        hf.encode_code(wave_24k, sample_rate=24000), hf.encode_code(resample(wave_24k, 24000, 16000))
    )
    assert not torch.equal(hf.encode_code(wave_24k[:, :6000]), hf.encode_code(wave_24k[:, :6000], 24000))


def test_xcodec2_batches_work_where_the_package_fails(xcodec2_pair: dict[str, Any]) -> None:
    original, ours = xcodec2_pair["original"], xcodec2_pair["ours"]
    rows = torch.stack([_speech(LONG, seed=1), _speech(LONG, seed=2)])
    with pytest.raises(RuntimeError):  # semantic features of item 0 only: the concatenation fails
        original.encode_code(rows)
    alone = [original.encode_code(row[None]) for row in rows]
    codes = ours.encode_code(rows)
    assert torch.equal(codes, torch.cat(alone))
    # Different lengths: a list in, a list out, each item as alone.
    items = [_speech(SHORT, seed=4), _speech(LONG, seed=5)]
    listed = ours.encode_code(items)
    assert isinstance(listed, list)
    for item, code in zip(items, listed, strict=True):
        expected = original.encode_code(item[None])
        assert torch.equal(code, expected)
        with torch.no_grad():
            expected_audio = original.decode_code(expected)
        (audio,) = ours.decode_code([code])
        assert_close_to_peak(audio, expected_audio, AUDIO_TOLERANCE)
    decoded = ours.decode_code(listed)
    assert [tuple(a.shape) for a in decoded] == [(1, 1, c.shape[-1] * 320) for c in listed]


def test_xcodec2_bad_input_names_the_argument(xcodec2_pair: dict[str, Any]) -> None:
    ours = xcodec2_pair["ours"]
    with pytest.raises(ArgumentError, match="input_waveform"):
        ours.encode_code(torch.zeros(2, 2, 3, 400))
    with pytest.raises(XcodecError, match=r"input_waveform\[1\]"):
        ours.encode_code([torch.zeros(400), torch.full((400,), float("nan"))])
    with pytest.raises(ArgumentError, match="vq_code"):
        ours.decode_code(torch.zeros(1, 1, 4))  # float codes


# --------------------------------------------------------------------------- NeuCodec
def _neucodec_config(sizes: NeuCodecSizes) -> NeuCodecConfig:
    """Our config for a small original NeuCodec (the package's layout carries no sizes)."""
    return NeuCodecConfig(
        hidden_size=sizes.hidden_size,
        intermediate_size=4 * sizes.hidden_size,
        num_hidden_layers=sizes.decoder_layers,
        num_attention_heads=sizes.decoder_heads,
        num_key_value_heads=sizes.decoder_heads,
        head_dim=sizes.hidden_size // sizes.decoder_heads,
        encoder_hidden_size=sizes.encoder_ngf,
        semantic_model_config=Wav2Vec2BertConfig(
            hidden_size=sizes.semantic_hidden_size,
            num_hidden_layers=16,
            num_attention_heads=sizes.semantic_heads,
            intermediate_size=sizes.semantic_intermediate_size,
        ),
        quantization_dim=sizes.hidden_size + sizes.semantic_hidden_size,
    )


@pytest.fixture(scope="module")
def neucodec_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    original = build_original_neucodec(NEUCODEC_SIZES, seed=0)
    root = tmp_path_factory.mktemp("neucodec")
    folder = save_neucodec_layout(original, root / "original")
    semantic = save_semantic_model(original, root / "w2v-bert")
    ours = NeuCodec.from_pretrained(folder, semantic_model=semantic, config=_neucodec_config(NEUCODEC_SIZES))
    return {"original": original, "ours": ours, "root": root}


def test_neucodec_tensor_batch_equals_the_package(neucodec_pair: dict[str, Any]) -> None:
    original, ours = neucodec_pair["original"], neucodec_pair["ours"]
    batch = torch.stack([_speech(LONG, seed=7), _speech(LONG, seed=8)])[:, None, :]
    with torch.no_grad():
        expected = original.encode_code(batch)
        expected_audio = original.decode_code(expected)
    codes = ours.encode_code(batch)
    # LONG is a whole number of hops: padded by one more, minus NeuCodec's one frame.
    assert codes.shape == (2, 1, LONG // 320) and codes.dtype == expected.dtype
    assert_codes_vary(expected, min_distinct=8)
    assert torch.equal(codes, expected)
    audio = ours.decode_code(codes)
    assert audio.shape == expected_audio.shape == (2, 1, 480 * codes.shape[-1])
    assert_close_to_peak(audio, expected_audio, AUDIO_TOLERANCE)
    assert ours.sample_rate == original.sample_rate == 24000
    assert ours.device == original.device == torch.device("cpu")


def test_neucodec_paths_and_lists(neucodec_pair: dict[str, Any], tmp_path: Path) -> None:
    original, ours = neucodec_pair["original"], neucodec_pair["ours"]
    wave = _speech(LONG, seed=9)
    path = tmp_path / "a16k.wav"
    sf.write(path, wave.numpy(), 16000, subtype="FLOAT")
    with torch.no_grad():
        with pytest.raises(Exception):  # noqa: B017 - the package's 16 kHz path crash (any error)
            original.encode_code(str(path))
        expected = original.encode_code(wave[None, None])
    assert torch.equal(ours.encode_code(str(path)), expected)
    assert torch.equal(ours.encode_code(path), expected)
    # Stereo: the package's encoder takes one channel; ours averages the channels.
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, torch.stack([wave, 0.5 * wave]).T.numpy(), 16000, subtype="FLOAT")
    assert torch.equal(ours.encode_code(stereo), ours.encode_code((0.75 * wave)[None, None]))
    # A list of different lengths (tensor and path): each item as alone.
    short = _speech(SHORT, seed=10)
    listed = ours.encode_code([short[None], path])
    assert isinstance(listed, list)
    with torch.no_grad():
        expected_short = original.encode_code(short[None, None])
        expected_audio = original.decode_code(expected_short)
    assert torch.equal(listed[0], expected_short)
    assert torch.equal(listed[1], expected)
    decoded = ours.decode_code(listed)
    assert_close_to_peak(decoded[0], expected_audio, AUDIO_TOLERANCE)


def test_resampled_file_codes_equal_the_package(neucodec_pair: dict[str, Any], tmp_path: Path) -> None:
    """A 24 kHz file: resampled with the package's filter (torchaudio's default sinc; the harness
    stands it in), so the codes are the package's. (soxr, xcodec's usual resampler, differs from
    it by about 1.2% of the peak on 2 s of speech and changed 22% of this tiny model's codes.)"""
    original, ours = neucodec_pair["original"], neucodec_pair["ours"]
    if SHARED_SPEECH.is_file():
        speech, _rate = sf.read(SHARED_SPEECH, dtype="float32")
        wave = torch.from_numpy(speech[16000 : 16000 + LONG])
    else:
        wave = _band_limited(LONG, seed=11)
    path = tmp_path / "a24k.wav"
    sf.write(path, resample(wave, 16000, 24000).numpy(), 24000, subtype="FLOAT")
    with torch.no_grad():
        expected = original.encode_code(str(path))
    codes = ours.encode_code(str(path))
    assert codes.shape == expected.shape == (1, 1, LONG // 320)
    assert_codes_vary(expected, min_distinct=8)
    assert torch.equal(codes, expected)
    # The same filter for a tensor at another rate (an argument the package lacks).
    at_24k = torch.from_numpy(sf.read(path, dtype="float32")[0])[None, None]
    assert torch.equal(ours.encode_code(at_24k, sample_rate=24000), expected)


@pytest.mark.parametrize(("orig", "new"), [(24000, 16000), (44100, 16000), (8000, 16000)])
def test_sinc_resample_is_torchaudios_filter(orig: int, new: int) -> None:
    """Equal to the harness's stand-in for torchaudio's Resample, and right on a band-limited
    signal (analytic tones; the filter's pass-band ripple is 0.1-0.2% of the peak: 0.5% allowed)."""
    seconds = 0.5
    freqs = torch.tensor([0.03, 0.15, 0.3]) * min(orig, new)  # well inside the pass band

    def tones(rate: int) -> torch.Tensor:
        t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
        return (0.2 * torch.sin(2 * torch.pi * freqs[:, None] * t[None])).sum(0).float()

    resampled = sinc_resample(tones(orig), orig, new)
    assert resampled.shape == (int(seconds * new),)
    assert_close_to_peak(resampled, SincResample(orig, new)(tones(orig)[None])[0], 1e-6)
    edge = new // 50
    assert_close_to_peak(resampled[edge:-edge], tones(new)[edge:-edge], 5e-3)


def test_distill_neucodec_equals_the_package(tmp_path: Path) -> None:
    from test_distill_neucodec import SMALL as DISTILL_SIZES
    from test_distill_neucodec import ours_config as distill_config

    original = build_original_distill_neucodec(DISTILL_SIZES, seed=0)
    folder = save_neucodec_layout(original, tmp_path / "distill")
    semantic = save_semantic_model(original, tmp_path / "distilhubert")
    ours = DistillNeuCodec.from_pretrained(
        folder, semantic_model=semantic, config=distill_config(DISTILL_SIZES, semantic)
    )
    batch = torch.stack([_speech(LONG, seed=13), _speech(LONG, seed=14)])[:, None, :]
    short = _speech(SHORT, seed=15)
    with torch.no_grad():
        expected = original.encode_code(batch)
        expected_audio = original.decode_code(expected)
        expected_short = original.encode_code(short[None, None])
    codes = ours.encode_code(batch)
    assert codes.shape == (2, 1, LONG // 320 + 1)
    assert_codes_vary(expected, min_distinct=6)
    assert torch.equal(codes, expected)
    assert_close_to_peak(ours.decode_code(codes), expected_audio, AUDIO_TOLERANCE)
    listed = ours.encode_code([short, batch[0, 0]])
    assert torch.equal(listed[0], expected_short)
    assert torch.equal(listed[1], expected[:1])
    assert ours.sample_rate == 24000
    with pytest.raises(ArgumentError, match="DistillNeuCodecModel"):
        NeuCodec(ours.codec)


def test_neucodec_bad_input_names_the_argument(neucodec_pair: dict[str, Any], tmp_path: Path) -> None:
    ours = neucodec_pair["ours"]
    with pytest.raises(ArgumentError, match="audio_or_path"):
        ours.encode_code(torch.zeros(1, 1, 1, 400))
    with pytest.raises(ArgumentError, match=r"\(batch, 1, samples\)"):  # as the package: no 2-D tensor
        ours.encode_code(torch.zeros(2, 400))
    with pytest.raises(XcodecError, match=r"missing\.wav"):
        ours.encode_code(tmp_path / "missing.wav")
    with pytest.raises(ArgumentError, match="fsq_codes"):
        ours.decode_code(torch.zeros(1, 2, 4, dtype=torch.long))


# --------------------------------------------------------------------------- the TTS scripts
# Written as Llasa's README (HKUSTAudio/Llasa-*) uses the xcodec2 package: the LLM is
# replaced by `generate`, which returns the token strings it would have produced.
LLASA_SCRIPT = """
import soundfile as sf
import torch
{import_line}


def ids_to_speech_tokens(speech_ids):
    speech_tokens_str = []
    for speech_id in speech_ids:
        speech_tokens_str.append(f"<|s_{{speech_id}}|>")
    return speech_tokens_str


def extract_speech_ids(speech_tokens_str):
    speech_ids = []
    for token_str in speech_tokens_str:
        if token_str.startswith("<|s_") and token_str.endswith("|>"):
            speech_ids.append(int(token_str[4:-2]))
        else:
            print(f"Unexpected token: {{token_str}}")
    return speech_ids


Codec_model = XCodec2Model.from_pretrained(model_path)
Codec_model.eval()
prompt_wav, sr = sf.read(prompt_path)
prompt_wav = torch.from_numpy(prompt_wav).float().unsqueeze(0)
with torch.no_grad():
    vq_code_prompt = Codec_model.encode_code(input_waveform=prompt_wav)
    vq_code_prompt = vq_code_prompt[0, 0, :]
    speech_ids_prefix = ids_to_speech_tokens(vq_code_prompt)
    speech_tokens = generate(speech_ids_prefix)
    speech_tokens = extract_speech_ids(speech_tokens)
    speech_tokens = torch.tensor(speech_tokens).unsqueeze(0).unsqueeze(0)
    gen_wav = Codec_model.decode_code(speech_tokens)
    gen_wav = gen_wav[:, :, prompt_wav.shape[1]:]
sf.write(out_path, gen_wav[0, 0, :].cpu().numpy(), 16000)
"""

# Written as NeuTTS (neuphonic/neutts-air) uses the neucodec package: reference encoding,
# the chat prompt's `<|speech_N|>` string, and the regex parse of the LLM's output.
NEUTTS_SCRIPT = """
import re

import soundfile as sf
import torch
{import_line}

codec = NeuCodec.from_pretrained(model_path)
codec.eval().to("cpu")
wav, sr = sf.read(ref_path, always_2d=False)
wav_tensor = torch.from_numpy(wav).float().unsqueeze(0).unsqueeze(0)
with torch.no_grad():
    ref_codes = codec.encode_code(audio_or_path=wav_tensor).squeeze(0).squeeze(0)
codes_str = "".join([f"<|speech_{{i}}|>" for i in ref_codes])
output_str = generate(codes_str)
speech_ids = [int(num) for num in re.findall(r"<\\|speech_(\\d+)\\|>", output_str)]
with torch.no_grad():
    codes = torch.tensor(speech_ids, dtype=torch.long)[None, None, :].to(codec.device)
    recon = codec.decode_code(codes).cpu().numpy()
audio = recon[0, 0, :]
sf.write(out_path, audio, codec.sample_rate)
"""


class _Preloaded:
    """Stands in for the package's class in its script run: ``from_pretrained`` returns the built model
    (the package's own ``from_pretrained`` downloads ``facebook/w2v-bert-2.0``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return self.model


def _run_script(template: str, import_line: str, namespace: dict[str, Any]) -> dict[str, Any]:
    namespace = dict(namespace)
    exec(compile(template.format(import_line=import_line), "<tts script>", "exec"), namespace)
    return namespace


def _prompt_file(folder: Path, samples: int) -> Path:
    """A 16 kHz prompt: the shared English recording where present, else synthetic speech-like noise."""
    if SHARED_SPEECH.is_file():
        wave, rate = sf.read(SHARED_SPEECH, dtype="float32")
        assert rate == 16000
        wave = wave[:samples]
    else:
        wave = _speech(samples, seed=12).numpy()
    path = folder / "prompt.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path


def test_llasa_script_runs_with_only_the_import_changed(xcodec2_pair: dict[str, Any], tmp_path: Path) -> None:
    prompt = _prompt_file(tmp_path, LONG)

    def generate(prefix: list[str]) -> list[str]:
        # The LLM continues the prompt's tokens: here with the prompt's codes reversed.
        continuation = [f"<|s_{int(token[4:-2]) ^ 0x5A5A}|>" for token in reversed(prefix)]
        return [*prefix, *continuation]

    runs = {}
    for name, import_line, extra in (
        ("package", "", {"XCodec2Model": _Preloaded(xcodec2_pair["original"])}),
        ("compat", "from xcodec.compat.xcodec2 import XCodec2Model", {}),
    ):
        namespace = {
            "model_path": str(xcodec2_pair["folder"]),
            "prompt_path": str(prompt),
            "generate": generate,
        }
        namespace["out_path"] = str(tmp_path / f"{name}.wav")
        runs[name] = _run_script(LLASA_SCRIPT, import_line, {**namespace, **extra})
    package, compat = runs["package"], runs["compat"]
    assert torch.equal(compat["speech_tokens"], package["speech_tokens"])
    assert_codes_vary(package["speech_tokens"], min_distinct=8)
    assert compat["gen_wav"].shape == package["gen_wav"].shape == (1, 1, 2 * (LONG // 320 + 1) * 320 - LONG)
    assert_close_to_peak(compat["gen_wav"], package["gen_wav"], AUDIO_TOLERANCE)
    assert sf.info(str(tmp_path / "compat.wav")).frames == compat["gen_wav"].shape[-1]


def test_neutts_script_runs_with_only_the_import_changed(
    neucodec_pair: dict[str, Any], tmp_path: Path
) -> None:
    # A Transformers-layout folder loads without the sizes / semantic_model arguments.
    model_path = tmp_path / "neucodec-hf"
    save_neucodec(neucodec_pair["ours"].codec, model_path)
    reference = _prompt_file(tmp_path, LONG)

    def generate(codes_str: str) -> str:
        # A chat answer: text, then speech tokens (the reference's, shifted) between markers.
        ids = [int(n) for n in re.findall(r"<\|speech_(\d+)\|>", codes_str)]
        answer = "".join(f"<|speech_{(n * 7 + 3) % 65536}|>" for n in ids)
        return f"<|SPEECH_GENERATION_START|>{answer}<|SPEECH_GENERATION_END|>"

    runs = {}
    for name, import_line, extra in (
        ("package", "", {"NeuCodec": _Preloaded(neucodec_pair["original"])}),
        ("compat", "from xcodec.compat.neucodec import NeuCodec", {}),
    ):
        namespace = {"model_path": str(model_path), "ref_path": str(reference), "generate": generate}
        namespace["out_path"] = str(tmp_path / f"{name}.wav")
        runs[name] = _run_script(NEUTTS_SCRIPT, import_line, {**namespace, **extra})
    package, compat = runs["package"], runs["compat"]
    assert compat["speech_ids"] == package["speech_ids"]
    assert len(set(package["speech_ids"])) >= 8
    assert compat["audio"].shape == package["audio"].shape == (480 * (LONG // 320),)
    assert_close_to_peak(
        torch.from_numpy(compat["audio"]), torch.from_numpy(package["audio"]), AUDIO_TOLERANCE
    )
    assert sf.info(str(tmp_path / "compat.wav")).samplerate == 24000
