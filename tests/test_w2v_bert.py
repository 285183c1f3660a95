"""Wav2Vec2-BERT encoder against Transformers' ``Wav2Vec2BertModel`` built from the same weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _oracle import require_oracle

from xcodec.checkpoints.common import load_state_dict_strict
from xcodec.configs.base import ConfigError
from xcodec.configs.w2v_bert import Wav2Vec2BertConfig
from xcodec.errors import CheckpointError
from xcodec.semantic.w2v_bert import Wav2Vec2BertEncoder

transformers = require_oracle("transformers")

TOLERANCE = 1e-5

# Small enough to be fast, with 40-frame inputs far longer than the clamp window (8 left,
# 4 right) so clamped and unclamped distances both occur.
TINY: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "left_max_position_embeddings": 8,
    "right_max_position_embeddings": 4,
    "conv_depthwise_kernel_size": 5,
}


def _reference(attn_implementation: str = "sdpa", **overrides: Any) -> Any:
    """A Transformers model whose every parameter (layer norms too) is moved off its init."""
    config = transformers.Wav2Vec2BertConfig(**{**TINY, **overrides})
    model = transformers.Wav2Vec2BertModel(config).eval()
    model.config._attn_implementation = attn_implementation
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def _ours_from(reference: Any, **kwargs: Any) -> Wav2Vec2BertEncoder:
    config = Wav2Vec2BertConfig.from_dict(reference.config.to_dict())
    model = Wav2Vec2BertEncoder(config, **kwargs).eval()
    load_state_dict_strict(model, reference.state_dict(), source="transformers Wav2Vec2BertModel")
    return model


def _padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 40, 160) features and a mask with lengths 40, 30, 11."""
    features = torch.randn(3, 40, 160)
    lengths = torch.tensor([40, 30, 11])
    mask = (torch.arange(40)[None, :] < lengths[:, None]).long()
    return features, mask


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("position_embeddings_type", ["relative_key", None])
def test_single_input_matches_reference(
    attn_implementation: str, position_embeddings_type: str | None
) -> None:
    reference = _reference(attn_implementation, position_embeddings_type=position_embeddings_type)
    ours = _ours_from(reference)
    features = torch.randn(1, 40, 160)
    with torch.inference_mode():
        expected = reference(features).last_hidden_state
        actual = ours(features)
    assert actual.shape == expected.shape == (1, 40, 64)
    assert (actual - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padded_batch_matches_reference_on_every_frame(attn_implementation: str) -> None:
    reference = _reference(attn_implementation)
    ours = _ours_from(reference)
    features, mask = _padded_batch()
    with torch.inference_mode():
        expected = reference(features, attention_mask=mask).last_hidden_state
        actual = ours(features, mask)
    # Padded frames too: the reference gives them (meaningless) values and we match those.
    assert (actual - expected).abs().max().item() <= TOLERANCE


def test_padded_batch_equals_each_item_alone() -> None:
    """Valid frames must not see padding: batched output equals each item encoded alone."""
    ours = _ours_from(_reference())
    features, mask = _padded_batch()
    # Garbage in the padding must not leak into valid frames either.
    features = features.masked_fill(~mask.bool()[..., None], 1e3)
    with torch.inference_mode():
        batched = ours(features, mask.bool())
        for item, length in enumerate(mask.sum(1).tolist()):
            alone = ours(features[item : item + 1, :length])
            assert (batched[item, :length] - alone[0]).abs().max().item() <= TOLERANCE


def test_query_chunking_matches_reference() -> None:
    reference = _reference()
    ours = _ours_from(reference, query_chunk_size=7)
    features, mask = _padded_batch()
    with torch.inference_mode():
        expected = reference(features, attention_mask=mask).last_hidden_state
        actual = ours(features, mask)
    assert (actual - expected).abs().max().item() <= TOLERANCE


def test_masked_spec_embed_follows_the_config() -> None:
    """The key exists exactly when Transformers creates it, so strict loading is an identity map."""
    with_vector = _reference()
    without_vector = _reference(mask_time_prob=0.0)
    assert "masked_spec_embed" in with_vector.state_dict()
    assert "masked_spec_embed" not in without_vector.state_dict()
    assert set(_ours_from(with_vector).state_dict()) == set(with_vector.state_dict())
    assert set(_ours_from(without_vector).state_dict()) == set(without_vector.state_dict())
    mismatched = Wav2Vec2BertEncoder(Wav2Vec2BertConfig(**TINY, mask_time_prob=0.0))
    with pytest.raises(CheckpointError, match="masked_spec_embed"):
        load_state_dict_strict(mismatched, with_vector.state_dict(), source="test")


def test_compiles_without_graph_breaks() -> None:
    ours = _ours_from(_reference())
    features, mask = _padded_batch()
    compiled = torch.compile(ours, fullgraph=True, backend="eager", dynamic=False)
    with torch.inference_mode():
        expected = ours(features, mask)
        actual = compiled(features, mask)
    assert (actual - expected).abs().max().item() <= TOLERANCE


def test_config_round_trips_and_reads_transformers_dump() -> None:
    dump = transformers.Wav2Vec2BertConfig().to_dict()
    config = Wav2Vec2BertConfig.from_dict(dump)
    assert config == Wav2Vec2BertConfig()  # the defaults agree with Transformers'
    assert config.extra["final_dropout"] == dump["final_dropout"]
    assert config.to_dict() == dump
    assert Wav2Vec2BertConfig.from_dict(config.to_dict()) == config

    custom = Wav2Vec2BertConfig(**TINY, hidden_act="gelu", mask_time_prob=0.0)
    assert Wav2Vec2BertConfig.from_dict(custom.to_dict()) == custom
    # And Transformers reads ours back into the same architecture.
    theirs = transformers.Wav2Vec2BertConfig.from_dict(custom.to_dict())
    assert set(transformers.Wav2Vec2BertModel(theirs).state_dict()) == set(
        Wav2Vec2BertEncoder(custom).state_dict()
    )

    with pytest.raises(ConfigError, match="model_type"):
        Wav2Vec2BertConfig.from_dict({**dump, "model_type": "hubert"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"add_adapter": True}, "add_adapter"),
        ({"position_embeddings_type": "rotary"}, "rotary"),
        ({"hidden_act": "mish"}, "mish"),
        ({"conv_depthwise_kernel_size": 4}, "odd"),
    ],
)
def test_unsupported_configs_raise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Wav2Vec2BertEncoder(Wav2Vec2BertConfig(**{**TINY, **overrides}))


def _largest_allocation(run: Callable[[], object]) -> int:
    """Bytes of the largest CPU allocation any single op made while ``run`` ran."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    return max(event.cpu_memory_usage for event in prof.events())


def test_long_input_never_builds_frames_by_frames_by_head_dim() -> None:
    """60 s of features (3000 frames) with one 64-wide head: the reference's (frames, frames,
    head_dim) float tensor would be 2.3 GB; ours allocates at most one (frames, frames)
    int64 plane (the distance index) at a time."""
    config = dict(TINY, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64)
    head_dim = config["hidden_size"]

    # The instrument works: the reference does show its big tensor (at a size it can afford).
    short = 600
    reference = _reference(**config)
    reference_peak = _largest_allocation(lambda: reference(torch.randn(1, short, 160)))
    assert reference_peak >= short * short * head_dim * 4

    frames = 3000
    ours = Wav2Vec2BertEncoder(Wav2Vec2BertConfig(**config)).eval()
    ours_peak = _largest_allocation(lambda: ours(torch.randn(1, frames, 160)))
    assert ours_peak <= frames * frames * 8
    assert ours_peak * 32 <= frames * frames * head_dim * 4


@pytest.mark.slow
def test_full_size_xcodec2_encoder_matches_reference() -> None:
    """The X-Codec2 semantic encoder shape (w2v-bert-2.0, first 16 layers) on ~1 s of features."""
    config = transformers.Wav2Vec2BertConfig(num_hidden_layers=16)
    reference = transformers.Wav2Vec2BertModel(config).eval()
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if "norm" in name:  # layer norms start at exactly 1 / 0
                parameter.add_(0.1 * torch.randn_like(parameter))
    ours = Wav2Vec2BertEncoder(Wav2Vec2BertConfig.from_dict(config.to_dict())).eval()
    load_state_dict_strict(ours, reference.state_dict(), source="transformers Wav2Vec2BertModel")
    features = torch.randn(2, 50, 160)
    mask = torch.ones(2, 50, dtype=torch.long)
    mask[1, 37:] = 0
    with torch.inference_mode():
        expected = reference(features, attention_mask=mask).last_hidden_state
        actual = ours(features, mask)
    assert (actual - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(
    ("first_query", "queries", "frames", "left", "right"),
    [
        (0, 5, 5, 64, 8),
        (0, 300, 300, 64, 8),
        (256, 44, 300, 64, 8),
        (3, 4, 9, 2, 1),
        (0, 1, 1, 3, 3),
        (7, 2, 9, 0, 0),
    ],
)
def test_relative_bias_equals_the_clamped_distance_lookup(
    first_query: int, queries: int, frames: int, left: int, right: int
) -> None:
    from xcodec.semantic.w2v_bert import relative_bias

    per_distance = torch.randn(2, 3, queries, left + right + 1)
    rows = torch.arange(first_query, first_query + queries)[:, None]
    distance = (torch.arange(frames)[None, :] - rows).clamp(-left, right) + left  # (queries, frames)
    expected = per_distance.gather(-1, distance.expand(2, 3, queries, frames))
    assert torch.equal(relative_bias(per_distance, first_query, frames, left, right), expected)
