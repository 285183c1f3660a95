"""X-Codec (v1) model parity with Transformers' XcodecModel on small random configs.

The reference is built with random, perturbed weights (random codebooks too: the
Transformers init zeroes them), saved with ``save_pretrained`` and loaded with ours.
Codes must be identical at every bandwidth (or differ only at proven near-ties, see
:func:`assert_codes_match`) and audio within 1e-4 of the reference audio's peak.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary, assert_tie_share
from _oracle import require_oracle
from _tiny import TINY_XCODEC_BANDWIDTHS, tiny_xcodec_dict

transformers = require_oracle("transformers")

from xcodec.checkpoints.xcodec import load_xcodec  # noqa: E402
from xcodec.configs.xcodec import DacConfig, XcodecConfig  # noqa: E402
from xcodec.models.xcodec import XcodecModel  # noqa: E402

AUDIO_TOLERANCE = 1e-4  # of the reference audio's peak
TINY_BANDWIDTHS = TINY_XCODEC_BANDWIDTHS  # the shared tiny X-Codec (tests/_tiny.py)


def tiny_reference(kind: str, *, seed: int = 0) -> transformers.XcodecModel:
    """A Transformers XcodecModel of the shared tiny config, a HuBERT or WavLM teacher, perturbed weights."""
    torch.manual_seed(seed)
    config = transformers.XcodecConfig(**tiny_xcodec_dict(kind))
    model = transformers.XcodecModel(config).eval()
    with torch.no_grad():
        # Perturb every parameter so a wrong mapping or a skipped layer shows up.
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        for name, buffer in model.named_buffers():
            if name.endswith("codebook.embed") or name.endswith("codebook.embed_avg"):
                buffer.copy_(torch.randn_like(buffer))
            elif name.endswith("codebook.cluster_size"):
                buffer.uniform_(0, 10)
    return model


def test_audio(batch: int = 2, samples: int = 3200, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(samples) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * time)
    return tone + 0.1 * torch.randn(batch, 1, samples, generator=generator)


test_audio.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module", params=["hubert", "wavlm"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(reference, ours) with identical weights, ours loaded from the reference's save_pretrained."""
    reference = tiny_reference(request.param)
    folder = tmp_path_factory.mktemp(f"xcodec_{request.param}")
    reference.save_pretrained(folder)
    return reference, load_xcodec(folder)


def reference_quantizer_input(
    reference: transformers.XcodecModel, input_values: torch.Tensor
) -> torch.Tensor:
    """The reference's fused features before the RVQ, (batch, dim, frames), from its own modules."""
    pad = reference.pad
    semantic = reference._extract_semantic_features(input_values)
    semantic = reference.encoder_semantic(semantic.transpose(1, 2))
    acoustic_input = input_values
    if (
        reference._get_conv1d_output_lengths(input_values.shape[2], reference.acoustic_encoder)
        != semantic.shape[2]
    ):
        acoustic_input = torch.nn.functional.pad(input_values, (pad, pad))
    fused = torch.cat([reference.acoustic_encoder(acoustic_input), semantic], dim=1)
    return reference.fc(fused.transpose(1, 2)).transpose(1, 2)


def assert_codes_match(
    reference: transformers.XcodecModel, input_values: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor
) -> None:
    """Codes equal, except where the reference's choice was a near-tie (best and second-best
    squared distances within 1e-4 relative); after such a tie, later stages of that frame are free.
    At most 1% of the frames may differ (each from a proven tie)."""
    assert ours.shape == theirs.shape
    if torch.equal(ours, theirs):
        return
    frames_differing = int((ours != theirs).any(dim=1).sum())
    assert_tie_share(
        frames_differing, theirs.shape[0] * theirs.shape[2], what="X-Codec frames vs the reference"
    )
    residual = reference_quantizer_input(reference, input_values)
    batch, num_stages, frames = theirs.shape
    free = torch.zeros(batch, frames, dtype=torch.bool)
    for stage in range(num_stages):
        codebook = reference.quantizer.quantizers[stage].codebook
        vectors = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])
        distance = torch.cdist(vectors.double(), codebook.embed.double()).pow(2).view(batch, frames, -1)
        best_two = distance.topk(2, dim=-1, largest=False).values
        near_tie = (best_two[..., 1] - best_two[..., 0]) <= 1e-4 * best_two[..., 1].clamp_min(1e-12)
        differs = ours[:, stage] != theirs[:, stage]
        unexplained = differs & ~free & ~near_tie
        assert not unexplained.any(), (
            f"stage {stage}: codes differ at {unexplained.nonzero().tolist()} with no near-tie"
        )
        free |= differs
        residual = residual - reference.quantizer.quantizers[stage].decode(theirs[:, stage])


@torch.no_grad()
@pytest.mark.parametrize("bandwidth", [None, *TINY_BANDWIDTHS])
def test_encode_decode_match_transformers(pair, bandwidth: float | None) -> None:
    reference, ours = pair
    audio = test_audio()
    theirs = reference.encode(audio, bandwidth).audio_codes
    codes = ours.encode(audio, bandwidth).audio_codes
    assert codes.dtype == torch.long
    for stage in range(theirs.shape[1]):  # every codebook picks varied rows
        assert_codes_vary(theirs[:, stage], min_distinct=3, what=f"codebook {stage}")
    assert_codes_match(reference, audio, codes, theirs)
    expected = reference.decode(theirs).audio_values
    decoded = ours.decode(theirs).audio_values
    assert decoded.shape == expected.shape == (2, 1, 3200)
    assert_close_to_peak(decoded, expected, AUDIO_TOLERANCE)


@torch.no_grad()
def test_number_of_codebooks_per_bandwidth(pair) -> None:
    _, ours = pair
    audio = test_audio(batch=1)
    counts = [ours.encode(audio, bandwidth).audio_codes.shape[1] for bandwidth in TINY_BANDWIDTHS]
    # floor(bandwidth / (log2(16) bits * 50 frames/s / 1000)) = floor(bandwidth / 0.2)
    assert counts == [1, 2, 4, 8]
    assert ours.num_codebooks == 8 and ours.codebook_size == 16


@torch.no_grad()
def test_decode_any_number_of_codebooks(pair) -> None:
    reference, ours = pair
    codes = torch.randint(0, 16, (2, 8, 7))
    assert_codes_vary(codes[:, 0], min_distinct=4)
    for count in (1, 3, 5, 8):
        expected = reference.decode(codes[:, :count]).audio_values
        decoded = ours.decode(codes[:, :count]).audio_values
        assert decoded.shape == (2, 1, 7 * 320)
        assert_close_to_peak(decoded, expected, AUDIO_TOLERANCE)


@torch.no_grad()
def test_forward_matches_transformers_on_unaligned_length(pair) -> None:
    """3300 samples: the acoustic encoder alone gives 10 frames, the semantic branch 11, so
    both implementations re-run the acoustic encoder on the hop/2-padded input."""
    reference, ours = pair
    audio = test_audio(batch=1, samples=3300)
    expected = reference(audio, bandwidth=0.8)
    output = ours(audio, bandwidth=0.8)
    assert output.audio_codes.shape == (1, 4, 11)
    assert_codes_vary(expected.audio_codes[:, 0], min_distinct=3)
    assert_codes_match(reference, audio, output.audio_codes, expected.audio_codes)
    assert output.audio_values.shape == (1, 1, 3300)
    assert_close_to_peak(output.audio_values, expected.audio_values, AUDIO_TOLERANCE)


def test_unsupported_bandwidth_names_the_supported_ones(pair) -> None:
    _, ours = pair
    with pytest.raises(ValueError, match=r"0\.3 kbps.*0\.2, 0\.4, 0\.8, 1\.6"):
        ours.encode(test_audio(batch=1), 0.3)


def test_decode_rejects_bad_codes(pair) -> None:
    _, ours = pair
    with pytest.raises(ValueError, match="9 codebooks"):
        ours.decode(torch.zeros(1, 9, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.15"):
        ours.decode(torch.full((1, 2, 4), 16))
    with pytest.raises(ValueError, match="mono"):
        ours.encode(torch.zeros(1, 2, 3200))


@torch.no_grad()
def test_tokenize_padded_batch_equals_items_alone(pair) -> None:
    reference, ours = pair
    audio = test_audio(batch=3, samples=3840)
    lengths = torch.tensor([3840, 2560, 3840])
    waveforms = audio[:, 0].clone()
    waveforms[1, 2560:] = 0.0
    result = ours.tokenize(waveforms, lengths, bandwidth=0.4)
    assert result.code_lengths.tolist() == [12, 8, 12]
    assert result.audio_codes.shape == (3, 2, 12)
    assert_codes_vary(result.audio_codes[:, 0], min_distinct=3)
    for item, length in enumerate(lengths.tolist()):
        alone = reference.encode(audio[item : item + 1, :, :length], 0.4).audio_codes
        frames = int(result.code_lengths[item])
        assert_codes_match(
            reference,
            audio[item : item + 1, :, :length],
            result.audio_codes[item : item + 1, :, :frames],
            alone,
        )
    assert (result.audio_codes[1, :, 8:] == 0).all()

    audio_out = ours.detokenize(result.audio_codes, result.code_lengths)
    assert audio_out.lengths.tolist() == [3840, 2560, 3840]
    for item in range(3):
        frames = int(result.code_lengths[item])
        alone = reference.decode(result.audio_codes[item : item + 1, :, :frames]).audio_values[0, 0]
        assert_close_to_peak(audio_out.audio[item, : alone.shape[-1]], alone, AUDIO_TOLERANCE)
    assert (audio_out.audio[1, 2560:] == 0).all()


def test_config_matches_transformers_defaults() -> None:
    ours = XcodecConfig()
    theirs = transformers.XcodecConfig()
    assert ours.hop_length == theirs.hop_length == 320
    assert ours.frame_rate == theirs.frame_rate == 50
    assert ours.num_quantizers == theirs.num_quantizers == 8
    assert ours.hidden_size == theirs.hidden_size == 1024
    assert ours.codebook_dim == theirs.codebook_dim
    ours_dict, theirs_dict = ours.to_dict(), theirs.to_dict()
    for key in (
        "target_bandwidths",
        "sample_rate",
        "kernel_size",
        "channel_ratios",
        "strides",
        "codebook_size",
    ):
        assert ours_dict[key] == theirs_dict[key], key
    for key, value in ours_dict["acoustic_model_config"].items():
        assert theirs_dict["acoustic_model_config"][key] == value, key
    for key, value in ours_dict["semantic_model_config"].items():
        assert theirs_dict["semantic_model_config"][key] == value, key
    assert DacConfig().to_dict()["hidden_size"] == transformers.DacConfig().hidden_size


def test_config_reads_transformers_json(tmp_path: Path) -> None:
    theirs = tiny_reference("wavlm").config
    theirs.save_pretrained(tmp_path)
    ours = XcodecConfig.from_json_file(tmp_path / "config.json")
    assert type(ours.semantic_model_config).__name__ == "WavLMConfig"
    assert ours.semantic_model_config.num_buckets == 16
    assert ours.acoustic_model_config.upsampling_ratios == (8, 5, 4, 2)
    assert ours.target_bandwidths == tuple(TINY_BANDWIDTHS)
    assert ours.num_quantizers == theirs.num_quantizers
    # A partial acoustic dict is completed from X-Codec's DAC defaults, as in Transformers.
    partial = XcodecConfig.from_dict({"acoustic_model_config": {"hidden_size": 16}})
    assert partial.acoustic_model_config.decoder_hidden_size == 1024
    assert partial.hidden_size == 16 + 768


def test_model_keys_equal_transformers() -> None:
    reference = tiny_reference("wavlm")
    ours = XcodecModel(XcodecConfig.from_dict(reference.config.to_dict()))
    theirs = set(reference.state_dict())
    # Only the positional conv differs: Transformers keeps its weight norm, we fold it.
    pos_conv = "semantic_model.encoder.pos_conv_embed.conv."
    theirs -= {pos_conv + "parametrizations.weight.original0", pos_conv + "parametrizations.weight.original1"}
    theirs.add(pos_conv + "weight")
    assert set(ours.state_dict()) == theirs


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_full_size_matches_transformers_on_one_recording(audio_dir: Path, tmp_path: Path, kind: str) -> None:
    """Published-size configs on 3 s of speech_en.flac, in the default suite (speech and
    music together are in the slow suite)."""
    _full_size_parity(audio_dir, tmp_path, kind, (("speech_en.flac", 0),))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_full_size_matches_transformers_on_real_recordings(
    audio_dir: Path, tmp_path: Path, kind: str
) -> None:
    """Published-size configs on real speech and music in one batch."""
    _full_size_parity(audio_dir, tmp_path, kind, (("speech_en.flac", 0), ("music.wav", 48000)))


def _full_size_parity(
    audio_dir: Path, tmp_path: Path, kind: str, recordings: tuple[tuple[str, int], ...]
) -> None:
    """Default (published-size) configs, random perturbed weights, 3 s from each (file, start
    sample) of ``recordings`` as one batch, at 0.5, 2 and 4 kbps."""
    import soundfile

    torch.manual_seed(11)
    semantic = transformers.HubertConfig() if kind == "hubert" else transformers.WavLMConfig()
    reference = transformers.XcodecModel(transformers.XcodecConfig(semantic_model_config=semantic)).eval()
    with torch.no_grad():
        for name, buffer in reference.named_buffers():
            if name.endswith("codebook.embed"):
                # The fused features of this random model have a std of about 10-20.
                buffer.copy_(8.0 * torch.randn_like(buffer))
        for parameter in reference.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    reference.save_pretrained(tmp_path)
    ours = load_xcodec(tmp_path)
    clips = []
    for name, start in recordings:
        samples, rate = soundfile.read(audio_dir / name, dtype="float32", start=start, frames=48000)
        assert rate == 16000
        clips.append(torch.from_numpy(samples))
    audio = torch.stack(clips)[:, None, :]
    with torch.inference_mode():
        for bandwidth in (0.5, 2.0, 4.0):
            theirs = reference.encode(audio, bandwidth).audio_codes
            codes = ours.encode(audio, bandwidth).audio_codes
            assert_codes_match(reference, audio, codes, theirs)
        # A test on constant codes would prove little: every stage must pick varied rows.
        for stage in range(theirs.shape[1]):
            assert_codes_vary(theirs[:, stage], min_distinct=10, what=f"codebook {stage}")
        expected_audio = reference.decode(theirs).audio_values
        ours_audio = ours.decode(theirs).audio_values
    # This random decoder (no final tanh) puts out audio peaking near 100, not within +-1;
    # our channels-last convolutions sum in another order, so the float32 error scales
    # with the signal (measured 1.3e-3 at a 97 peak: 1.3e-5 relative).
    assert_close_to_peak(ours_audio, expected_audio, AUDIO_TOLERANCE)
