"""The model side of xcodec.train: losses, discriminators, the trainable generator, init, recipes.

All on the tiny recipe's model (1.3 M parameters) or smaller, so the file stays fast on CPU.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests._asserts import assert_codes_vary, assert_not_near_zero
from tests._oracle import require_oracle
from tests._tiny import tiny_xcodec2
from xcodec.checkpoints.common import load_state_dict_strict
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.errors import CheckpointError, ConfigError
from xcodec.layers.fsq import ProjectedFSQ
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.train.discriminators import (
    Discriminators,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
    PeriodDiscriminator,
)
from xcodec.train.fsq_norm import FsqInputNorm
from xcodec.train.generator import TrainableXcodec2
from xcodec.train.init import reinit_for_training_
from xcodec.train.losses import (
    MultiScaleMelLoss,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    mel_filterbank,
    semantic_loss,
)
from xcodec.train.recipe import (
    TrainRecipe,
    autocast_dtype,
    available_recipes,
    load_recipe,
    lr_at,
    recipe_from_dict,
)
from xcodec.train.semantic_head import SemanticReconstructionHead


def _noise(batch: int = 2, samples: int = 8000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=generator)


def _tiny_model() -> Xcodec2Model:
    return Xcodec2Model(Xcodec2Config.from_dict(load_recipe("tiny").model or {}))


@functools.cache
def _reinit_weights(seed: int) -> dict[str, torch.Tensor]:
    # The re-initialised tiny weights, drawn once per seed for the whole file.
    return reinit_for_training_(_tiny_model(), seed=seed, include_semantic_encoder=True).state_dict()


def _tiny_trainable(seed: int = 0, freeze: tuple[str, ...] = ()) -> TrainableXcodec2:
    model = _tiny_model()
    model.load_state_dict(_reinit_weights(seed))
    return TrainableXcodec2(model, freeze=freeze).train()


# ------------------------------------------------------------------------------ losses


def test_mel_loss_is_seven_for_a_tenfold_gain() -> None:
    # log10 of a mel magnitude scaled by 10 moves by exactly 1 at every bin above the
    # clamp, so each of the 7 scales contributes an L1 of 1.
    reference = _noise(2, 16000)
    loss = MultiScaleMelLoss()
    assert loss(10 * reference, reference).item() == pytest.approx(7.0, abs=1e-4)
    assert loss(reference, reference).item() == 0.0
    # Below the clamp (1e-5) both sides read -5: silence against silence costs nothing,
    # a 1e-3 gain of noise against it costs less than 7.
    assert 0 < loss(1e-3 * reference, reference).item() < 7 * 3


def test_mel_loss_matches_a_direct_computation() -> None:
    # One scale written out with torch.stft and the filterbank, against the module.
    estimate, reference = _noise(1, 4000, seed=1), _noise(1, 4000, seed=2)
    loss = MultiScaleMelLoss(n_mels=(40,), windows=(256,))
    filters = mel_filterbank(256, 40, 16000).float()

    def log_mel(audio: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(audio, 256, 64, window=torch.hann_window(256), return_complex=True).abs()
        return (spectrum.transpose(1, 2) @ filters).clamp(min=1e-5).log10()

    expected = (log_mel(estimate) - log_mel(reference)).abs().mean()
    assert loss(estimate, reference).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mel_filterbank_matches_slaney_reference() -> None:
    # transformers' numpy filterbank (test-only) is the torchaudio one the original uses.
    audio_utils = pytest.importorskip("transformers.audio_utils")
    for n_fft, n_mels in ((32, 5), (512, 80), (2048, 320)):
        reference = audio_utils.mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=16000,
            norm="slaney",
            mel_scale="slaney",
        )
        ours = mel_filterbank(n_fft, n_mels, 16000).numpy()
        assert abs(ours - reference).max() < 1e-12 * abs(reference).max() + 1e-15
        assert (ours.sum(axis=0) > 0).all()  # no empty filter at any scale


def test_lsgan_losses_hand_computed() -> None:
    real = [torch.tensor([1.0, 0.0]), torch.tensor([[2.0]])]
    fake = [torch.tensor([0.5, -0.5]), torch.tensor([[1.0]])]
    # disc: mean((real-1)^2) + mean(fake^2) per discriminator, summed:
    # (0 + 1)/2 + (0.25 + 0.25)/2 = 0.75 ; (1)/1 + (1)/1 = 2  -> 2.75
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(2.75)
    # gen: mean((fake-1)^2): (0.25 + 2.25)/2 = 1.25 ; 0 -> 1.25
    assert lsgan_generator_loss(fake).item() == pytest.approx(1.25)


def test_feature_matching_and_semantic_losses_hand_computed() -> None:
    real = [[torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])], [torch.tensor([3.0])]]
    fake = [[torch.tensor([2.0, 0.0]), torch.tensor([[0.5]])], [torch.tensor([1.0])]]
    # mean |fake - real| per map, summed: (1 + 2)/2 + 0.5 + 2 = 4.0
    assert feature_matching_loss(real, fake).item() == pytest.approx(4.0)
    fake_param = [[t.clone().requires_grad_() for t in maps] for maps in fake]
    real_param = [[t.clone().requires_grad_() for t in maps] for maps in real]
    feature_matching_loss(real_param, fake_param).backward()
    assert all(t.grad is None for maps in real_param for t in maps)  # real maps are targets
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0], [1.0, 4.0]]], requires_grad=True)
    # (0 + 4 + 4 + 0) / 4 = 2
    loss = semantic_loss(pred, target)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert target.grad is None and pred.grad is not None


# ------------------------------------------------------------------------------ discriminators


def test_discriminator_shapes_and_feature_maps() -> None:
    recipe = load_recipe("tiny")
    discriminators = Discriminators.from_config(recipe.discriminators)
    logits, features = discriminators(_noise(2, 8000)[:, None, :])
    config = recipe.discriminators
    assert len(logits) == len(features) == len(config.periods) + len(config.fft_sizes)
    for period, period_logits, maps in zip(config.periods, logits, features, strict=False):
        rows = math.ceil(8000 / period)
        for _ in range(4):  # four stride-3 layers, then a stride-1 one
            rows = (rows - 1) // 3 + 1
        assert period_logits.shape == (2, (rows + 1) * period)  # the (2, 1) output conv adds a row
        assert [m.shape[1] for m in maps] == [4, 16, 32, 32, 32]  # narrow widths, capped at 32
        assert all(m.shape[-1] == period for m in maps)
    for fft, hop, stft_logits in zip(
        config.fft_sizes, config.hop_sizes, logits[len(config.periods) :], strict=True
    ):
        freqs, frames = fft // 2 + 1, 8000 // hop + 1
        for _ in range(4):  # four stride-2 convs
            freqs, frames = (freqs - 1) // 2 + 1, (frames - 1) // 2 + 1
        assert stft_logits.shape == (2, 1, freqs, frames)
    # The discriminators tell inputs apart: logits depend on the audio.
    other, _ = discriminators(_noise(2, 8000, seed=5)[:, None, :])
    assert all((a - b).abs().max() > 0 for a, b in zip(logits, other, strict=True))


def test_period_discriminator_receptive_field() -> None:
    # An impulse at sample t reaches only the logits of its phase column t % period, and
    # only rows within the layers' reach of row t // period.
    torch.manual_seed(0)
    period = 5
    discriminator = PeriodDiscriminator(period, channels=4, max_channels=8)
    silence = torch.zeros(1, 1, 3000)
    impulse = silence.clone()
    t = 1502
    impulse[0, 0, t] = 1.0
    base = discriminator(silence)[0].reshape(1, -1, period)
    hit = discriminator(impulse)[0].reshape(1, -1, period)
    changed = (hit - base).abs() > 0
    columns = changed.any(dim=1)[0]
    assert columns.tolist() == [c == t % period for c in range(period)]
    rows = set(changed[0, :, t % period].nonzero().flatten().tolist())
    # Output rows o of a conv (kernel k, stride s, padding p) read input rows
    # o s - p .. o s - p + k - 1: propagate the impulse's row through the stack.
    low = high = t // period
    for kernel, stride, padding in [(5, 3, 2)] * 4 + [(5, 1, 2), (2, 1, 1)]:
        low, high = math.ceil((low + padding - kernel + 1) / stride), (high + padding) // stride
    assert rows == set(range(max(low, 0), high + 1))


def test_stft_discriminator_is_local_in_time() -> None:
    # A click changes only the STFT frames around it, so far-away logits stay put.
    torch.manual_seed(0)
    discriminator = MultiResolutionSTFTDiscriminator(
        fft_sizes=(126,), hop_sizes=(63,), win_lengths=(126,), channels=4, max_channels=8
    )
    background = _noise(1, 16000)[:, None, :]
    clicked = background.clone()
    clicked[0, 0, 200] += 1.0
    base = discriminator(background)[0][0]
    hit = discriminator(clicked)[0][0]
    frames_changed = ((hit - base).abs() > 0).any(dim=2)[0, 0].nonzero().flatten()
    assert frames_changed.numel() >= 1
    assert int(frames_changed.max()) < base.shape[-1] // 2  # the click is in the first 2% of the audio


def test_multi_period_discriminator_widths_configurable() -> None:
    wide = MultiPeriodDiscriminator((2, 3), channels=16, max_channels=512)
    narrow = MultiPeriodDiscriminator((2, 3), channels=4, max_channels=16)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(narrow) * 50 < count(wide)


# ------------------------------------------------------------------------------ generator


def test_generator_semantic_target_is_layer_16_and_frozen() -> None:
    generator = _tiny_trainable()
    model = generator.model
    audio = _noise(2, 8000)
    output = generator(audio)
    # The target is the frozen encoder's output on the extractor's features (its last layer
    # = hidden_states[num_hidden_layers], layer 16 for the published config).
    extractor = model._feature_extractor()
    features = extractor(list(audio), sampling_rate=16000, return_tensors="pt")["input_features"]
    with torch.no_grad():
        expected = model.semantic_encoder(features)
    torch.testing.assert_close(output.semantic_target, expected, rtol=0, atol=0)
    assert not output.semantic_target.requires_grad
    assert Xcodec2Config().semantic_model_config.num_hidden_layers == 16
    encoder_params = {id(p) for p in model.semantic_encoder.parameters()}
    assert not encoder_params & {id(p) for p in generator.trainable_parameters()}
    # The whole generator loss sends no gradient into the encoder, which stays in eval mode.
    loss = MultiScaleMelLoss()(output.audio, audio) + semantic_loss(
        output.semantic_pred, output.semantic_target
    )
    loss.backward()
    assert all(p.grad is None for p in model.semantic_encoder.parameters())
    generator.train()
    assert not model.semantic_encoder.training and model.acoustic_decoder.training


def test_generator_codes_equal_inference_codes() -> None:
    # What a training step quantises is what xcodec.load encodes for the same audio.
    generator = _tiny_trainable().eval()
    audio = _noise(2, 8000, seed=3)
    with torch.no_grad():
        output = generator(audio)
    tokens = generator.model.tokenize(audio).audio_codes[:, 0, :]
    assert torch.equal(output.codes.long(), tokens)
    assert not generator.model.semantic_encoder._forward_hooks  # the capture ends with the step
    assert_codes_vary(tokens)
    assert output.audio.shape == audio.shape
    assert output.semantic_pred.shape == output.semantic_target.shape


def test_ste_gives_encoder_gradient() -> None:
    # The mel loss alone (through the decoder and the rounding) reaches the acoustic encoder
    # and the FSQ input projection.
    generator = _tiny_trainable()
    audio = _noise(2, 8000)
    output = generator(audio)
    MultiScaleMelLoss()(output.audio, audio).backward()
    model = generator.model
    for module in (
        model.acoustic_encoder,
        model.semantic_adapter,
        model.fc_encoder,
        model.quantizer.project_in,
    ):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads)
        assert max(float(g.abs().max()) for g in grads if g is not None) > 0


def test_reinit_gives_sound_and_gradient_everywhere() -> None:
    generator = _tiny_trainable(seed=1)
    audio = _noise(2, 8000)
    output = generator(audio)
    rms = output.audio.pow(2).mean().sqrt().item()
    assert rms > 1e-3 * audio.pow(2).mean().sqrt().item()
    assert output.codes.unique().numel() >= 8
    loss = MultiScaleMelLoss()(output.audio, audio) + semantic_loss(
        output.semantic_pred, output.semantic_target
    )
    loss.backward()
    silent = [
        name
        for name, p in generator.named_trainable_parameters()
        if p.grad is None or p.grad.abs().max() == 0
    ]
    assert silent == []
    # Deterministic for a seed, whatever the global RNG did in between.
    torch.manual_seed(123)
    again = reinit_for_training_(_tiny_model(), seed=1, include_semantic_encoder=True).state_dict()
    first = generator.model.state_dict()
    assert list(first) == list(again) and all(torch.equal(first[key], again[key]) for key in first)


def test_decoder_only_freezing_keeps_encoder_and_tokens() -> None:
    recipe = load_recipe("xcodec2-decoder")
    model = tiny_xcodec2()
    audio = _noise(1, 8000, seed=4)
    tokens_before = model.tokenize(audio).audio_codes
    generator = TrainableXcodec2(model, freeze=recipe.freeze).train()
    frozen = {
        name: p.detach().clone()
        for name, p in generator.named_parameters()
        if not name.startswith("model.acoustic_decoder")
        and not name.startswith("model.quantizer.project_out")
    }
    decoder_before = {
        name: p.detach().clone()
        for name, p in generator.named_parameters()
        if name.startswith("model.acoustic_decoder")
    }
    trainable = generator.named_trainable_parameters()
    assert trainable and all(
        name.startswith(("model.acoustic_decoder.", "model.quantizer.project_out.")) for name, _ in trainable
    )
    optimizer = torch.optim.AdamW(generator.trainable_parameters(), lr=1e-3)
    output = generator(audio)
    MultiScaleMelLoss()(output.audio, audio).backward()
    optimizer.step()
    after = dict(generator.named_parameters())
    assert all(torch.equal(value, after[name]) for name, value in frozen.items())
    assert any(not torch.equal(value, after[name]) for name, value in decoder_before.items())
    generator.eval()
    assert torch.equal(model.tokenize(audio).audio_codes, tokens_before)


def test_freeze_names_are_checked() -> None:
    model = tiny_xcodec2()
    with pytest.raises(ConfigError, match=re.escape("'model.no_such_module'")):
        TrainableXcodec2(model, freeze=["model.no_such_module"])
    generator = TrainableXcodec2(tiny_xcodec2(), freeze=["model.acoustic_decoder.head"])
    names = {name for name, _ in generator.named_trainable_parameters()}
    assert "model.acoustic_decoder.head.linear.weight" not in names
    assert "model.acoustic_decoder.fc.weight" in names


def test_semantic_head_keys_are_the_original_layout() -> None:
    head = SemanticReconstructionHead(96, 32)
    assert sorted(head.state_dict()) == sorted(
        [
            "fc_post_s.weight",
            "fc_post_s.bias",
            "SemanticDecoder_module.initial_conv.weight",
            "SemanticDecoder_module.residual_blocks.1.weight",
            "SemanticDecoder_module.residual_blocks.1.bias",
            "SemanticDecoder_module.residual_blocks.3.weight",
            "SemanticDecoder_module.residual_blocks.3.bias",
            "SemanticDecoder_module.final_conv.weight",
        ]
    )
    torch.manual_seed(1)
    source = SemanticReconstructionHead(96, 32)
    lightning = {"CodecEnc.x": torch.zeros(1), **source.state_dict()}
    assert head.load_original_state_dict(lightning)
    quantized = torch.randn(2, 7, 96)
    torch.testing.assert_close(head(quantized), source(quantized), rtol=0, atol=0)
    assert not head.load_original_state_dict({"CodecEnc.x": torch.zeros(1)})
    partial = {k: v for k, v in source.state_dict().items() if k != "fc_post_s.bias"}
    with pytest.raises(CheckpointError, match=re.escape("fc_post_s.bias")):
        head.load_original_state_dict(partial)


def test_semantic_decoder_skip_adds_relu_of_input() -> None:
    # Quirk "in-place ReLU before the skip": out = final(block(h) + relu(h)), h = initial(z).
    torch.manual_seed(0)
    head = SemanticReconstructionHead(8, 4)
    decoder = head.SemanticDecoder_module
    z = torch.randn(1, 4, 5)
    h = decoder.initial_conv(z)
    block = decoder.residual_blocks
    expected = decoder.final_conv(block[3](F.relu(block[1](F.relu(h)))) + F.relu(h))
    torch.testing.assert_close(decoder(z), expected)


def test_inference_model_saves_without_the_head(tmp_path: Path) -> None:
    generator = _tiny_trainable()
    generator.inference_model.save_pretrained(tmp_path)
    loaded = Xcodec2Model.from_pretrained(tmp_path)
    assert not any("fc_post_s" in key for key in loaded.state_dict())
    audio = _noise(1, 8000)
    assert torch.equal(loaded.tokenize(audio).audio_codes, generator.model.eval().tokenize(audio).audio_codes)


# ------------------------------------------------------------------------------ recipes


def test_recipes_load_with_original_values() -> None:
    assert {"xcodec2", "xcodec2-decoder", "tiny"} <= set(available_recipes())
    recipe = load_recipe("xcodec2")
    assert (recipe.loss_weights.mel, recipe.loss_weights.adv, recipe.loss_weights.fm) == (15.0, 1.0, 1.0)
    assert recipe.loss_weights.semantic == 5.0
    assert recipe.optimizer.betas == (0.8, 0.9) and recipe.grad_clip == 1.0
    assert recipe.discriminators.periods == (2, 3, 5, 7, 11)
    assert recipe.segment_seconds == 6.0 and recipe.sample_rate == 16000
    decoder = load_recipe("xcodec2-decoder")
    assert decoder.freeze == ("encoder", "semantic_head")
    assert decoder.optimizer == recipe.optimizer  # inherited from its base
    tiny = load_recipe("tiny")
    assert tiny.model is not None and tiny.discriminators.mpd_channels < recipe.discriminators.mpd_channels
    assert recipe_from_dict(tiny.to_dict()) == tiny


def test_recipe_overrides_are_typed() -> None:
    recipe = load_recipe(
        "tiny",
        [
            "loss_weights.mel=10",
            "schedule.decay_steps=null",
            "freeze=encoder",
            "model.hidden_size=128",
            "optimizer.betas=[0.5, 0.99]",
            "segment_seconds=2",
        ],
    )
    assert recipe.loss_weights.mel == 10.0 and isinstance(recipe.loss_weights.mel, float)
    assert recipe.schedule.decay_steps is None
    assert recipe.freeze == ("encoder",)
    assert recipe.model is not None and recipe.model["hidden_size"] == 128
    assert recipe.model["num_hidden_layers"] == 2  # other model keys kept
    assert recipe.optimizer.betas == (0.5, 0.99)
    assert recipe.segment_seconds == 2.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss_weights.foo=1", "'loss_weights.foo'"),
        ("nonsense=1", "'nonsense'"),
        ("batch_size=1.5", "'batch_size'"),
        ("grad_clip=abc", "'grad_clip'"),
        ("precision=int8", "'precision'"),
        ("schedule.warmup_steps.x=1", "'schedule.warmup_steps.x'"),
        ("optimizer.betas=[0.5]", "'optimizer.betas'"),
        ("no_equals_sign", "key=value"),
    ],
)
def test_recipe_override_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_recipe("tiny", [override])


def test_recipe_files_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'no-such-recipe'"):
        load_recipe("no-such-recipe")
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny\nbatch_size: 4\nloss_weights:\n  adv: 2\n")
    recipe = load_recipe(str(path))
    assert recipe.name == "mine" and recipe.batch_size == 4
    assert recipe.loss_weights.adv == 2.0 and recipe.loss_weights.mel == 15.0
    assert recipe.discriminators == load_recipe("tiny").discriminators
    bad = tmp_path / "bad.yaml"
    bad.write_text("mel_weight: 3\n")
    with pytest.raises(ConfigError, match="'mel_weight'"):
        load_recipe(str(bad))


def test_lr_schedule_at_key_steps() -> None:
    recipe = load_recipe("xcodec2")
    assert lr_at(0, recipe) == pytest.approx(1e-5)
    # Quadratic warm-up (the original WarmupLR): a quarter of the way up at half the steps.
    assert lr_at(1500, recipe) == pytest.approx(1e-5 + 0.25 * 9e-5)
    assert lr_at(3000, recipe) == pytest.approx(1e-4)
    assert lr_at(3000 + 200_000, recipe) == pytest.approx(6e-5)  # halfway down the line
    assert lr_at(3000 + 400_000, recipe) == pytest.approx(2e-5)
    assert lr_at(10**7, recipe) == pytest.approx(2e-5)
    until_end = load_recipe("xcodec2", ["schedule.decay_steps=null", "max_steps=13000"])
    assert lr_at(8000, until_end) == pytest.approx(6e-5)
    assert lr_at(13000, until_end) == pytest.approx(2e-5)
    assert isinstance(recipe, TrainRecipe)


def test_autocast_dtype_follows_precision() -> None:
    assert autocast_dtype("auto", "cpu") is None
    assert autocast_dtype("auto", "cuda:0") == torch.bfloat16
    assert autocast_dtype("fp16", "cuda") == torch.float16 and autocast_dtype("fp32", "cuda") is None
    with pytest.raises(ConfigError, match="'precision'"):
        autocast_dtype("int8", "cpu")


def test_generator_trains_neucodec() -> None:
    # NeuCodec (24 kHz decoder, one code frame fewer) through the same wrapper.
    values = dict(load_recipe("tiny").model or {})
    values.pop("downsampling_ratios")
    model = NeuCodecModel(NeuCodecConfig.from_dict(values))
    reinit_for_training_(model, seed=0, include_semantic_encoder=True)
    generator = TrainableXcodec2(model).train()
    audio = _noise(2, 8000)
    output = generator(audio)
    assert output.audio.shape == (2, 12000)  # the input's duration at 24 kHz
    assert output.semantic_pred.shape == output.semantic_target.shape == (2, 25, 32)
    assert torch.equal(output.codes.long(), model.eval().tokenize(audio).audio_codes[:, 0, :])


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_discriminators_load_the_original_layout() -> None:
    # The original's convs use the old weight norm (weight_g / weight_v); its keys sit under
    # discriminator. / spec_discriminator. in the Lightning state dict.
    recipe = load_recipe("tiny")
    source = Discriminators.from_config(recipe.discriminators)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    old_style = torch.nn.utils.weight_norm(torch.nn.Conv2d(1, 4, (5, 1)))
    new_style = source.mpd.discriminators[0].convs[0][0]
    assert {k: v.shape for k, v in old_style.state_dict().items()} == {
        {
            "parametrizations.weight.original0": "weight_g",
            "parametrizations.weight.original1": "weight_v",
        }.get(k, k): v.shape
        for k, v in new_style.state_dict().items()
    }
    original = {}
    for key, value in source.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        key = key.replace("mpd.", "discriminator.", 1).replace("mrsd.", "spec_discriminator.", 1)
        original[key] = value
    original["CodecEnc.conv.weight"] = torch.zeros(1)
    target = Discriminators.from_config(recipe.discriminators)
    assert target.load_original_state_dict(original)
    audio = _noise(1, 4000)[:, None, :]
    for a, b in zip(target(audio)[0], source(audio)[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not target.load_original_state_dict({"CodecEnc.conv.weight": torch.zeros(1)})
    wider = Discriminators.from_config(load_recipe("xcodec2").discriminators)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        wider.load_original_state_dict(original)


def test_semantic_target_is_hidden_state_of_the_cut_reference_encoder() -> None:
    # X-Codec2 keeps the first 16 of W2V-BERT 2.0's 24 layers, and training regresses
    # hidden_states[16] of the full model. Same here at tiny scale: our 2-layer encoder,
    # loaded from the first layers of a 4-layer Transformers model, yields its hidden_states[2].
    transformers = require_oracle("transformers")
    semantic = dict((load_recipe("tiny").model or {})["semantic_model_config"])
    reference = transformers.Wav2Vec2BertModel(
        transformers.Wav2Vec2BertConfig(**{**semantic, "num_hidden_layers": 4})
    ).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    kept = {
        key: value
        for key, value in reference.state_dict().items()
        if not key.startswith(("encoder.layers.2.", "encoder.layers.3."))
    }
    generator = _tiny_trainable()
    load_state_dict_strict(generator.model.semantic_encoder, kept, source="transformers Wav2Vec2BertModel")
    audio = _noise(1, 8000)
    output = generator(audio)
    features = generator.model._feature_extractor()(list(audio), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(features["input_features"], output_hidden_states=True).hidden_states[2]
    peak = hidden.abs().max().item()
    assert (output.semantic_target - hidden).abs().max().item() <= 1e-5 * peak
    assert_not_near_zero(hidden, what="hidden states")


def test_fsq_codes_under_autocast_equal_float32() -> None:
    # Mixed-precision training runs the model under autocast; the FSQ projection and
    # rounding stay float32 there, so a step quantises as inference does.
    torch.manual_seed(0)
    quantizer = ProjectedFSQ(64, [4, 4, 4, 4])
    features = torch.randn(1, 2000, 64)
    _, expected = quantizer(features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, codes = quantizer(features)
        # What autocast alone would have done: the projection in bf16 moves some codes.
        moved = quantizer.quantizer(quantizer.quantizer.bound(quantizer.project_in(features).float()))[1]
    assert torch.equal(codes, expected)
    assert not torch.equal(moved, expected)


# ------------------------------------------------------------ FSQ input normalisation (issue 12)


def _norm_trainable(seed: int = 0) -> TrainableXcodec2:
    model = _tiny_model()
    model.load_state_dict(_reinit_weights(seed))
    return TrainableXcodec2(model, fsq_input_norm=True).train()


def test_fsq_input_norm_standardises_and_ignores_a_common_shift_and_gain() -> None:
    # The collapse of issue 12 is every frame's digits moving together (a common shift and
    # a growing gain) into the saturated bound. In training mode the normalised digits are
    # zero-mean, unit-spread per digit over the batch, so such a move does not change them,
    # and their gradient has no component along it.
    norm = FsqInputNorm(4).train()
    generator = torch.Generator().manual_seed(0)
    digits = torch.randn(2, 13, 4, generator=generator) * torch.tensor([0.5, 2.0, 5.0, 1.0])
    digits = digits + torch.tensor([3.0, -1.0, 0.0, 40.0])
    out = norm(digits)
    flat = out.reshape(-1, 4)
    assert float(flat.mean(0).abs().max()) < 1e-5
    assert float((flat.var(0, unbiased=False) - 1).abs().max()) < 1e-3
    moved = FsqInputNorm(4).train()(digits * 300.0 - 1000.0)
    assert float((moved - out).abs().max()) < 1e-3 * float(out.abs().max())
    raw = digits.clone().requires_grad_(True)
    (FsqInputNorm(4).train()(raw) * torch.randn(2, 13, 4, generator=generator)).sum().backward()
    assert raw.grad is not None
    common = raw.grad.reshape(-1, 4).sum(0)
    assert float(common.abs().max()) < 1e-4 * float(raw.grad.abs().max())
    # The drift penalty: mean over digits of mean^2 + log(variance)^2, zero when standardised.
    flat_in = digits.reshape(-1, 4)
    hand = flat_in.mean(0).square() + flat_in.var(0, unbiased=False).log().square()
    assert norm.drift_penalty is not None
    assert math.isclose(float(norm.drift_penalty), float(hand.mean()), rel_tol=1e-4)
    assert float(norm.drift_penalty) > 1.0
    unit = FsqInputNorm(4).train()
    unit(out)
    assert unit.drift_penalty is not None and float(unit.drift_penalty) < 1e-4
    # The first batch sets the running statistics; later ones move them by the momentum.
    assert torch.allclose(norm.running_mean, digits.reshape(-1, 4).mean(0))
    before = norm.running_mean.clone()
    norm(digits + 10.0)
    assert torch.allclose(norm.running_mean, before + 1.0)
    norm.eval()(digits)
    assert norm.drift_penalty is None
    with pytest.raises(ValueError, match="momentum"):
        FsqInputNorm(4, momentum=0.0)


def test_fsq_input_norm_folds_into_the_inference_model(tmp_path: Path) -> None:
    # In eval mode the generator quantises with the running statistics; the folded
    # project_in computes the same in plain inference math, so the saved model (what
    # last/ holds, what xcodec.load and transformers run) gives the generator's codes.
    generator = _norm_trainable()
    optimizer = torch.optim.AdamW(generator.trainable_parameters(), lr=1e-3)
    for seed in range(3):
        audio = _noise(2, 8000, seed=seed)
        output = generator(audio)
        MultiScaleMelLoss()(output.audio, audio).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert generator.fsq_input_norm is not None and int(generator.fsq_input_norm.num_batches) == 3
    assert not generator.model.quantizer._forward_hooks  # the normalisation lives only in a step
    project_in = generator.model.quantizer.project_in
    raw = project_in.weight.detach().clone(), project_in.bias.detach().clone()
    generator.eval()
    audio = _noise(2, 8000, seed=7)
    with torch.no_grad():
        expected = generator(audio)
        plain = generator.model.tokenize(audio).audio_codes[:, 0, :]
    assert not torch.equal(plain, expected.codes.long())  # unfolded weights: other codes
    with generator.folded_inference_model() as model, torch.no_grad():
        folded = model.tokenize(audio).audio_codes[:, 0, :]
        model.save_pretrained(tmp_path)
    assert torch.equal(project_in.weight, raw[0]) and torch.equal(project_in.bias, raw[1])
    # Folding reorders float operations: a code may differ only next to a rounding boundary.
    differ = (folded != expected.codes.long()).float().mean().item()
    assert differ <= 0.02, differ
    assert_codes_vary(folded, 4)
    loaded = Xcodec2Model.from_pretrained(str(tmp_path))
    assert torch.equal(loaded.tokenize(audio).audio_codes[:, 0, :], folded)


def test_fsq_input_norm_is_refused_with_a_frozen_encoder_and_set_by_recipe() -> None:
    model = _tiny_model()
    with pytest.raises(ConfigError, match="fsq_input_norm"):
        TrainableXcodec2(model, freeze=["encoder"], fsq_input_norm=True)
    assert load_recipe("tiny").fsq_input_norm == "on" and load_recipe("demo").fsq_input_norm == "on"
    assert load_recipe("xcodec2").fsq_input_norm == "scratch"
    assert load_recipe("xcodec2-decoder").fsq_input_norm == "off"
    assert recipe_from_dict({}).fsq_input_norm == "off"  # the original recipe has none
    # YAML reads a bare on/off as a boolean; the key takes it as the word.
    assert load_recipe("xcodec2", ["fsq_input_norm=on"]).fsq_input_norm == "on"
    assert load_recipe("tiny", ["fsq_input_norm=off"]).fsq_input_norm == "off"
    with pytest.raises(ConfigError, match="fsq_input_norm"):
        load_recipe("tiny", ["fsq_input_norm=sometimes"])
    with pytest.raises(ConfigError, match="fsq_input_norm_momentum"):
        load_recipe("tiny", ["fsq_input_norm_momentum=0"])
