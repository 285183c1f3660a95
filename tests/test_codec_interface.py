"""The one codec interface (xcodec.base.CodecModel) that the API, CLI and tokenizer use without probing.

Each codec's ``frames_for`` must be the count its ``tokenize`` really returns (the API plans
windows with it), ``bandwidths``/``check_bandwidth`` must agree with what ``tokenize``
accepts, and the tokenizer must resample to ``input_sample_rate`` (NeuCodec: 16 kHz in,
24 kHz out) while recording sample counts at the output rate, as ``xcodec encode`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_codes_vary
from _tiny import tiny_xcodec2, tiny_xcodec2_config, tiny_xcodec2_dict, tiny_xcodec_dict
from test_dataset_support import EnergyCodec

from xcodec.api import Codec
from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import ArgumentError
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Model

# Around one and two hops of 320 input samples, where the codecs' counts differ.
LENGTHS = [320, 321, 639, 640, 641, 1000]


def _tiny_neucodec() -> NeuCodecModel:
    values = {k: v for k, v in tiny_xcodec2_dict().items() if k not in ("sampling_rate", "hop_length")}
    torch.manual_seed(0)
    return NeuCodecModel(NeuCodecConfig.from_dict(values)).eval()


def _tiny_xcodec() -> XcodecModel:
    torch.manual_seed(0)
    return XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval()


def _tiny_xcodec2() -> Xcodec2Model:
    # Counts only: the plain tiny model (tiny_xcodec2() also spreads its codes, which costs a run).
    torch.manual_seed(0)
    return Xcodec2Model(tiny_xcodec2_config()).eval()


CODECS = {"xcodec2": _tiny_xcodec2, "neucodec": _tiny_neucodec, "xcodec": _tiny_xcodec}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_frames_for_is_what_tokenize_returns(name: str) -> None:
    model: CodecModel = CODECS[name]()
    waveforms = 0.1 * torch.randn(len(LENGTHS), max(LENGTHS), generator=torch.Generator().manual_seed(0))
    result = model.tokenize(waveforms, torch.tensor(LENGTHS))
    assert result.code_lengths.tolist() == [model.frames_for(n) for n in LENGTHS]
    # The counts differ between the codecs: X-Codec2 pads always, NeuCodec counts one fewer.
    expected = {
        "xcodec2": [n // 320 + 1 for n in LENGTHS],
        "neucodec": [n // 320 for n in LENGTHS],
        "xcodec": [(n + 320 - 400) // 320 + 1 for n in LENGTHS],
    }[name]
    assert [model.frames_for(n) for n in LENGTHS] == expected
    assert model.input_hop_length == 320
    assert model.frame_rate == 50.0


def test_bandwidths_and_their_check() -> None:
    xcodec = _tiny_xcodec()
    assert xcodec.bandwidths == (0.2, 0.4, 0.8, 1.6) and xcodec.batch_invariant
    xcodec.check_bandwidth(None)
    xcodec.check_bandwidth(0.8)
    with pytest.raises(ArgumentError, match=r"bandwidth=1 kbps.*0\.2, 0\.4, 0\.8, 1\.6"):
        xcodec.check_bandwidth(1.0)
    xcodec2 = Xcodec2Model(tiny_xcodec2_config())
    assert xcodec2.bandwidths == () and xcodec2.batch_invariant
    xcodec2.check_bandwidth(123.0)  # one codebook: no choice, ignored as tokenize ignores it


class UpsamplingEnergyCodec(CodecModel):
    """The tokenizer tests' codec with NeuCodec's rates: 16 kHz in (hop 320), 24 kHz out (hop 480)."""

    batch_invariant = True

    def __init__(self) -> None:
        super().__init__()
        self.energy = EnergyCodec()  # frames the 16 kHz input by its hop, 320

    sample_rate = property(lambda self: 24000)
    input_sample_rate = property(lambda self: 16000)
    hop_length = property(lambda self: 480)
    num_codebooks = property(lambda self: 2)
    codebook_size = property(lambda self: 1024)

    def tokenize(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, *, bandwidth: float | None = None
    ) -> TokenizeResult:
        return self.energy.tokenize(waveforms, lengths, bandwidth=bandwidth)

    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        raise NotImplementedError("the test codec only encodes")


def make_upsampling_codec(options: object, device: str | None) -> Codec:
    return Codec(UpsamplingEnergyCodec(), "test/upsampling-energy-codec")


def test_tokenizer_resamples_to_the_input_rate_and_counts_output_samples(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from xcodec.dataset import TokenizeOptions, read_tokens, tokenize_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    seconds = {"a": 0.5, "b": 0.75}
    for name, duration in seconds.items():
        sf.write(corpus / f"{name}.wav", 0.3 * rng.standard_normal(int(48000 * duration)), 48000)
    options = TokenizeOptions(input=str(corpus), out=str(tmp_path / "out"), num_workers=0, progress=False)
    result = tokenize_corpus(options, make_upsampling_codec)
    assert result.exit_status == 0
    table = read_tokens(str(tmp_path / "out")).to_pylist()
    assert len(table) == 2
    codec = make_upsampling_codec(None, None)
    for row in table:
        name = Path(row["source"]).stem
        # Decoded at 16 kHz: 50 frames per second of audio (at 24 kHz there would be 75).
        assert row["num_frames"] == round(50 * seconds[name])
        assert row["num_samples"] == round(24000 * seconds[name]) and row["sample_rate"] == 24000
        assert abs(row["duration"] - seconds[name]) < 1e-9
        # The same codes as the simple API, which resamples to input_sample_rate too.
        expected = codec.encode(str(corpus / f"{name}.wav"))
        assert isinstance(expected, torch.Tensor)
        assert torch.equal(torch.tensor(row["audio_codes"]), expected.to(torch.int32))


def test_from_pretrained_finds_its_loader_after_importing_only_the_model(tmp_path: Path) -> None:
    """The registry is filled when the package root is imported (it imports xcodec.checkpoints),
    so a fresh process that imports only a model module can still load and save."""
    import subprocess
    import sys

    _tiny_xcodec2().save_pretrained(tmp_path / "tiny")
    script = (
        "import sys\n"
        "from xcodec.models.xcodec2 import Xcodec2Model\n"
        "model = Xcodec2Model.from_pretrained(sys.argv[1])\n"
        "model.save_pretrained(sys.argv[2])\n"
        "print(type(model).__name__, model.loaded_parts)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tiny"), str(tmp_path / "again")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Xcodec2Model", "all"]
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        tmp_path / "tiny" / "model.safetensors"
    ).read_bytes()


def test_a_class_without_a_loader_is_named() -> None:
    from xcodec import registry
    from xcodec.errors import XcodecError

    with pytest.raises(XcodecError, match="UpsamplingEnergyCodec"):
        UpsamplingEnergyCodec.from_pretrained("anything")
    # A subclass of a registered model uses its parent's loader.
    assert registry.codec_loader(type("MyXcodec", (XcodecModel,), {})) is registry.codec_loader(XcodecModel)


def test_runtime_options_reach_every_module(tmp_path: Path) -> None:
    import xcodec
    from xcodec.runtime import RuntimeOptions
    from xcodec.windowing import WindowConfig

    tiny_xcodec2().save_pretrained(tmp_path / "xcodec2")
    windows = WindowConfig(window_seconds=10.0, context_seconds=1.0, crossfade_seconds=0.5)
    options = RuntimeOptions(exact_order=True, chunking=False, windows=windows)
    exact = xcodec.load(tmp_path / "xcodec2", runtime=options)
    default = xcodec.load(tmp_path / "xcodec2")
    model = exact.model
    assert isinstance(model, CodecModel) and exact.windows == windows
    assert model.acoustic_decoder.rotate_over_heads and not default.model.acoustic_decoder.rotate_over_heads
    assert model.acoustic_encoder.chunk_samples == model.acoustic_encoder.trailing_chunk_samples == 0
    assert default.model.acoustic_encoder.chunk_samples > 0
    audio = (0.2 * torch.randn(24000, generator=torch.Generator().manual_seed(3))).clamp(-0.9, 0.9)
    codes = exact.encode(audio, sampling_rate=16000)
    assert isinstance(codes, torch.Tensor)
    assert_codes_vary(codes)
    assert torch.equal(codes, default.encode(audio, sampling_rate=16000))
    decoded, reference = exact.decode(codes), default.decode(codes)
    assert isinstance(decoded, torch.Tensor) and isinstance(reference, torch.Tensor)
    peak = float(reference.abs().max())
    assert peak > 1e-3 and float((decoded - reference).abs().max()) <= 1e-4 * peak
    with pytest.raises(ArgumentError, match="windows"):
        xcodec.load(tmp_path / "xcodec2", windows=windows, runtime=options)

    xcodec_model = XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict("wavlm"))).eval()
    from xcodec.runtime import apply_runtime_options

    apply_runtime_options(xcodec_model, RuntimeOptions(exact_order=False, chunking=False))
    assert xcodec_model.semantic_model.use_sdpa
    assert xcodec_model.acoustic_encoder.chunk_samples == xcodec_model.acoustic_decoder.chunk_samples == 0
