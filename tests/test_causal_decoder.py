"""X-Codec2-Streaming (issue 15 item 4): the causal decoder, its bounded stream state, its checkpoint.

Tiny random models (weights perturbed, FSQ input standardised so the codes vary) with an
attention window much shorter than the streams, so a KV cache that kept too much, too
little or the wrong frames would change the audio. Comparisons are relative to the
offline decode's peak.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary, assert_not_near_zero
from _stream import offline_decode as _offline
from _stream import streamed_decode
from _tiny import perturb_, standardise_fsq_input_, tiny_xcodec2, tiny_xcodec2_config

from xcodec.api import Codec
from xcodec.configs.base import ConfigError
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.errors import XcodecError
from xcodec.layers.causal import CausalConv1d, CausalSelfAttention, FrameGroupNorm
from xcodec.layers.transformer import SelfAttention
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.ops.streaming import streaming
from xcodec.stages.vocos import ResNetBlock
from xcodec.streaming import CausalXcodec2Stream, StreamError, decoder_stream

EXACT = 1e-5  # of the offline decode's peak
WINDOW = 5  # attention window (frames); the streams below are 40 frames long


def _causal(seed: int = 0, window: int = WINDOW) -> Xcodec2Model:
    torch.manual_seed(seed)
    model = Xcodec2Model(tiny_xcodec2_config(decoder_causal=True, decoder_attention_window=window)).eval()
    perturb_(model, seed)
    standardise_fsq_input_(model)
    return model


@pytest.fixture(scope="module")
def causal() -> Xcodec2Model:
    return _causal(seed=4)


def _codes(model: Xcodec2Model, frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.codebook_size, (batch, 1, frames), generator=generator)
    assert_codes_vary(codes, 10)
    return codes


def _streamed(model: Xcodec2Model, codes: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return streamed_decode(model, codes, sizes, stream_type=CausalXcodec2Stream)


def test_config_keys_round_trip_and_stay_out_of_bidirectional_checkpoints(tmp_path):
    model = _causal(seed=1, window=7)
    model.save_pretrained(tmp_path / "causal")
    written = json.loads((tmp_path / "causal" / "config.json").read_text())
    assert written["decoder_causal"] is True and written["decoder_attention_window"] == 7
    loaded = Xcodec2Model.from_pretrained(tmp_path / "causal")
    assert loaded.config.decoder_causal and loaded.config.decoder_attention_window == 7
    codes = _codes(model, 12)
    assert_close_to_peak(_offline(loaded, codes), _offline(model, codes), EXACT)
    # A bidirectional checkpoint's config.json keeps exactly the Transformers keys.
    tiny_xcodec2().save_pretrained(tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "decoder_causal" not in plain and "decoder_attention_window" not in plain
    with pytest.raises(ConfigError, match="decoder_attention_window"):
        tiny_xcodec2_config(decoder_causal=True, decoder_attention_window=0)
    # NeuCodec shares the decoder, so it shares the switch.
    values = {**tiny_xcodec2_config().to_dict(), "decoder_causal": True}
    values.pop("model_type")
    neucodec_config = NeuCodecConfig.from_dict(values)
    assert neucodec_config.to_dict()["decoder_causal"] is True
    neucodec = NeuCodecModel(neucodec_config)
    assert isinstance(neucodec.acoustic_decoder.embed, CausalConv1d)


def test_bidirectional_weights_load_unchanged_and_false_builds_the_reference_modules():
    bidirectional = tiny_xcodec2(seed=3)
    decoder = bidirectional.acoustic_decoder
    # decoder_causal false: the reference's module types (parity tests pin the numbers).
    assert type(decoder.embed) is torch.nn.Conv1d and type(decoder.prior_net[0]) is ResNetBlock
    assert type(decoder.layers[0].self_attn) is SelfAttention
    assert type(decoder.post_net[0].norm1) is torch.nn.GroupNorm
    causal = Xcodec2Model(tiny_xcodec2_config(decoder_causal=True)).eval()
    result = causal.load_state_dict(bidirectional.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert isinstance(causal.acoustic_decoder.layers[0].self_attn, CausalSelfAttention)
    assert isinstance(causal.acoustic_decoder.prior_net[0].norm1, FrameGroupNorm)
    codes = _codes(causal, 20, seed=1)
    # Only the decoder differs (so the tokens are the base checkpoint's): a different function.
    difference = _offline(causal, codes) - _offline(bidirectional, codes)
    assert_not_near_zero(difference, what="causal minus bidirectional decode")


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_stream_equals_offline(causal, size):
    codes = _codes(causal, 40, seed=size)
    sizes = [size] * (40 // size) + ([40 % size] if 40 % size else [])
    assert_close_to_peak(_streamed(causal, codes, sizes), _offline(causal, codes), EXACT)


def test_random_chunkings_and_batch_of_streams_equals_solo(causal):
    codes = _codes(causal, 40, batch=3, seed=11)
    offline = _offline(causal, codes)
    rng = random.Random(0)
    for _ in range(3):
        sizes, left = [], 40
        while left:
            sizes.append(min(left, rng.randint(1, 9)))
            left -= sizes[-1]
        batch = _streamed(causal, codes, sizes)
        assert_close_to_peak(batch, offline, EXACT)
        for item in range(3):
            solo = _streamed(causal, codes[item : item + 1], sizes)
            assert_close_to_peak(batch[item : item + 1], solo, EXACT, what=f"stream {item} in the batch")


def test_padded_batch_decode_equals_solo(causal):
    codes = _codes(causal, 30, batch=2, seed=12)
    lengths = torch.tensor([30, 17])
    padded = _offline(causal, codes, code_lengths=lengths)
    solo = _offline(causal, codes[1:, :, :17])
    assert_close_to_peak(padded[1:, : 17 * causal.hop_length], solo, EXACT)


def test_causality_and_bounded_context(causal):
    """Future codes leave past audio alone (beyond the ISTFT tail); past codes older than the
    receptive field (convs, window x layers) leave present audio alone."""
    hop, frames = causal.hop_length, 60
    codes = _codes(causal, frames, seed=21)
    audio = _offline(causal, codes)[0]
    future = codes.clone()
    future[..., 25:] = (future[..., 25:] + 1) % causal.codebook_size
    changed = _offline(causal, future)[0]
    head = causal.acoustic_decoder.head
    final = 25 * hop - head.padding  # frame 25's window starts here ("same" crop)
    assert torch.equal(changed[:final], audio[:final])
    assert_not_near_zero(changed[final:] - audio[final:], what="audio after the changed codes")
    # Receptive field in frames: embed 6 + two ResNet blocks on each side (2 convs x 2) +
    # (window - 1) per attention layer; the ISTFT adds up to n_fft / hop - 1 frames of overlap.
    layers = len(causal.acoustic_decoder.layers)
    reach = 6 + 8 + layers * (WINDOW - 1) + 8
    past = codes.clone()
    past[..., :3] = (past[..., :3] + 1) % causal.codebook_size
    moved = _offline(causal, past)[0]
    untouched = (3 + reach + head.n_fft // hop) * hop
    assert untouched < frames * hop - 8 * hop
    assert_close_to_peak(moved[untouched:], audio[untouched:], EXACT, what="audio beyond the receptive field")
    assert_not_near_zero(moved[: 3 * hop] - audio[: 3 * hop], what="audio of the changed codes")


def test_state_stays_bounded_and_each_push_decodes_only_its_frames(causal):
    decoder = causal.acoustic_decoder
    seen: list[int] = []
    handle = decoder.fc.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].shape[1]))
    try:
        stream = decoder_stream(causal)
        codes = _codes(causal, 40, seed=31)[0]
        for start in range(0, 40, 3):
            stream.push(codes[:, start : start + 3])
    finally:
        handle.remove()
    assert seen == [3] * 13 + [1]
    states = stream._states
    caches = [s for m, s in states.items() if isinstance(m, CausalSelfAttention)]
    convs = [(m, s) for m, s in states.items() if isinstance(m, CausalConv1d)]
    assert len(caches) == len(decoder.layers) and len(convs) == 1 + 4 + 4
    assert all(s.keys is not None and s.keys.shape[2] == WINDOW - 1 for s in caches)
    assert all(s.history is not None and s.history.shape[-1] == m.kernel_size[0] - 1 for m, s in convs)
    assert stream._codes is not None and stream._codes.shape[2] == 0  # no codes kept
    stream.flush()


def test_module_level_streaming_matches_offline(causal):
    """``with streaming(decoder)``: the same forward serves both uses, module by module."""
    latents = torch.randn(2, 20, causal.config.quantization_dim)
    decoder = causal.acoustic_decoder
    with torch.inference_mode():
        offline = decoder.features(latents)
        with streaming(decoder, 2):
            pieces = [decoder.features(latents[:, i : i + 6]) for i in range(0, 20, 6)]
    assert_close_to_peak(torch.cat(pieces, dim=1), offline, EXACT, what="decoder features")


def test_failed_push_keeps_the_stream_and_options_are_refused(causal):
    codes = _codes(causal, 12, seed=41)[0]
    stream = decoder_stream(causal)
    first = stream.push(codes[:, :5])
    fc = causal.acoustic_decoder.fc
    saved = fc.bias.detach().clone()
    with torch.no_grad():
        fc.bias[0] = float("nan")
    try:
        with pytest.raises(StreamError, match="non-finite"):
            stream.push(codes[:, 5:9])
    finally:
        with torch.no_grad():
            fc.bias.copy_(saved)
    with pytest.raises(XcodecError, match="code values"):
        stream.push(codes[:, 5:9] + causal.codebook_size)
    rest = [stream.push(codes[:, 5:9]), stream.push(codes[:, 9:]), stream.flush()]
    assert_close_to_peak(torch.cat([first, *rest])[None], _offline(causal, codes[None]), EXACT)
    with pytest.raises(StreamError, match="after flush"):
        stream.push(codes[:, :1])
    codec = Codec(causal)
    pieces = list(codec.stream_decode([codes[:, i : i + 4] for i in range(0, 12, 4)]))
    assert_close_to_peak(torch.cat(pieces)[None], _offline(causal, codes[None]), EXACT)
    with pytest.raises(XcodecError, match="takes no options"):
        codec.decoder_stream(left_context=4)


def test_streaming_recipe_switches_an_init_checkpoint_to_the_causal_decoder(tmp_path):
    from xcodec.train.init_sources import load_init
    from xcodec.train.recipe import load_recipe

    recipe = load_recipe("xcodec2-streaming")
    assert recipe.model == {"decoder_causal": True, "decoder_attention_window": 64}
    assert "encoder" in recipe.freeze  # tokens stay the --init checkpoint's
    base = tiny_xcodec2(seed=5)
    base.save_pretrained(tmp_path / "base")
    model = load_init(str(tmp_path / "base"), recipe.model, seed=0).model
    assert model.config.decoder_causal and model.config.decoder_attention_window == 64
    assert isinstance(model.acoustic_decoder.layers[0].self_attn, CausalSelfAttention)
    own = model.state_dict()
    assert all(torch.equal(own[key], value) for key, value in base.state_dict().items())
    # A key that changes a shape fails the strict load, naming the parameters.
    with pytest.raises(XcodecError, match=r"mlp\.fc1\.weight"):
        load_init(str(tmp_path / "base"), {"intermediate_size": 96}, seed=0)


def test_packaged_streaming_demo_keeps_the_demo_tokens_and_streams_exactly():
    """xcodec2-demo-streaming: the demo's encoder and FSQ as they are (same tokens), a causal decoder."""
    import xcodec
    from xcodec.checkpoints.common import packaged_checkpoint

    folder = packaged_checkpoint("xcodec2-demo-streaming")
    assert folder is not None and (folder / "model.safetensors").stat().st_size <= 12_000_000
    streaming_demo = xcodec.load("xcodec2-demo-streaming").model
    demo = xcodec.load("xcodec2-demo").model
    assert streaming_demo.config.decoder_causal and not demo.config.decoder_causal
    own, base = streaming_demo.state_dict(), demo.state_dict()
    assert own.keys() == base.keys()
    decoder = ("acoustic_decoder.", "quantizer.project_out.")
    assert all(torch.equal(own[k], base[k]) for k in own if not k.startswith(decoder))  # same tokens
    assert any(not torch.equal(own[k], base[k]) for k in own if k.startswith(decoder))  # a trained decoder
    codes = _codes(streaming_demo, 30, seed=51)
    pieces = list(
        xcodec.load("xcodec2-demo-streaming").stream_decode([codes[0, :, i : i + 2] for i in range(0, 30, 2)])
    )
    assert_close_to_peak(torch.cat(pieces)[None], _offline(streaming_demo, codes), EXACT)


def test_neucodec_causal_decoder_streams_exactly():
    """NeuCodec shares the decoder and the switch: its 24 kHz head (hop 480) streams exactly too."""
    values = {**tiny_xcodec2_config(decoder_causal=True, decoder_attention_window=4).to_dict()}
    values.pop("model_type")
    torch.manual_seed(6)
    model = NeuCodecModel(NeuCodecConfig.from_dict(values)).eval()
    perturb_(model, 6)
    assert model.hop_length == 480
    codes = _codes(model, 24, seed=61)
    assert_close_to_peak(_streamed(model, codes, [1, 2, 3, 7, 11]), _offline(model, codes), EXACT)
