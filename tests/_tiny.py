"""The tiny configs and random checkpoints shared by the tests and the benchmark's ``--tiny`` runs.

One definition of each tiny config: :data:`TINY_XCODEC2` and :func:`tiny_xcodec_dict` are
``config.json`` dicts in the Transformers layout, which both our configs (``from_dict``)
and the oracle's (``transformers.Xcodec2Config(**...)``) read; bench/_tiny.py re-exports
them. The tiny models keep the published hop (320) and the 160-dim semantic features, so
the real feature extractors and frame arithmetic run unchanged.

Weights are perturbed away from PyTorch's default init: at default init every frame of a
tiny X-Codec2 lands on the middle FSQ code, which would hide a broken pipeline.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.models.xcodec2 import Xcodec2Model

TINY_XCODEC2: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 16,
    "encoder_hidden_size": 8,
    "downsampling_ratios": [2, 2, 4, 4, 5],
    "semantic_model_config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "conv_depthwise_kernel_size": 5,
    },
    "quantization_dim": 64 + 32,  # acoustic + semantic hidden sizes
    "quantization_levels": [4, 4, 4, 4],  # 256 codes: a random model still spreads over many
}

# Small but shaped like the published X-Codec: DAC ratios (8, 5, 4, 2) -> hop 320, the base
# HuBERT/WavLM conv strides (also 320), 8 codebooks. Codebooks of 16 entries make the
# bandwidths 0.2 kbps per codebook at 50 frames/s.
TINY_XCODEC_BANDWIDTHS = [0.2, 0.4, 0.8, 1.6]
TINY_XCODEC_SEMANTIC: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "conv_dim": [8] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
# WavLM's relative position bias, shrunk to the tiny clips.
TINY_WAVLM_EXTRA: dict[str, Any] = {"num_buckets": 16, "max_bucket_distance": 40}
TINY_XCODEC_ACOUSTIC: dict[str, Any] = {"encoder_hidden_size": 2, "decoder_hidden_size": 32, "hidden_size": 8}


def tiny_xcodec2_dict(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of :data:`TINY_XCODEC2` with top-level ``overrides`` applied."""
    values = copy.deepcopy(TINY_XCODEC2)
    values.update(overrides)
    return values


def tiny_xcodec_dict(kind: str = "hubert", **overrides: Any) -> dict[str, Any]:
    """The tiny X-Codec ``config.json`` dict with a HuBERT or WavLM (``kind``) teacher."""
    if kind not in ("hubert", "wavlm"):
        raise ValueError(f"kind must be 'hubert' or 'wavlm', not {kind!r}")
    semantic = {"model_type": kind, **TINY_XCODEC_SEMANTIC}
    if kind == "wavlm":
        semantic.update(TINY_WAVLM_EXTRA)
    values: dict[str, Any] = {
        "acoustic_model_config": dict(TINY_XCODEC_ACOUSTIC),
        "semantic_model_config": semantic,
        "codebook_size": 16,
        "target_bandwidths": list(TINY_XCODEC_BANDWIDTHS),
    }
    values.update(overrides)
    return values


def tiny_xcodec2_config(**overrides: Any) -> Xcodec2Config:
    """Our :class:`Xcodec2Config` of :data:`TINY_XCODEC2` (with ``overrides``)."""
    return Xcodec2Config.from_dict(tiny_xcodec2_dict(**overrides))


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Scale every parameter by a random factor and add noise, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.mul_(1 + 0.2 * noise).add_(
                scale * 0.1 * torch.randn(parameter.shape, generator=generator)
            )
    return model


def standardise_fsq_input_(model: Xcodec2Model, seconds: float = 2.0, seed: int = 1) -> None:
    """Make each FSQ input dimension zero-mean, unit-spread on a noise clip, in place.

    A random tiny X-Codec2 feeds its FSQ values in the hundreds: the bound saturates and
    every frame lands on one of a few corner codes (4-5 distinct of 256 on noise). Per
    dimension, ``project_in`` is rescaled and shifted so the values spread over the levels
    (about 60 distinct codes on 100 frames of noise). Same architecture and cost.
    """
    generator = torch.Generator().manual_seed(seed)
    waveform = 0.1 * torch.randn(1, int(seconds * model.sample_rate), generator=generator)
    captured: list[torch.Tensor] = []
    project_in = model.quantizer.project_in
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        with torch.inference_mode():
            model.tokenize(waveform)
    finally:
        handle.remove()
    values = captured[0].reshape(-1, captured[0].shape[-1])  # (frames, digits)
    mean, std = values.mean(dim=0), values.std(dim=0)
    with torch.no_grad():
        project_in.weight.div_(std[:, None])
        project_in.bias.sub_(mean).div_(std)


def tiny_xcodec2(seed: int = 0) -> Xcodec2Model:
    """The tiny X-Codec2 of :data:`TINY_XCODEC2`, weights perturbed and FSQ input standardised."""
    torch.manual_seed(seed)
    model = Xcodec2Model(tiny_xcodec2_config()).eval()
    perturb_(model, seed)
    standardise_fsq_input_(model)
    return model


def save_tiny_xcodec2(folder: Path, seed: int = 0) -> Xcodec2Model:
    model = tiny_xcodec2(seed)
    model.save_pretrained(folder)
    return model


def spread_fsq_codes_(model: Xcodec2Model, seconds: float = 2.0, seed: int = 1) -> float:
    """Scale the FSQ input projection so a noise clip's pre-quantisation values have unit spread.

    A randomly initialised full-size X-Codec2 squeezes them to ~0, so every frame gets the
    middle code; a test on such codes (window agreement, parity) could not fail. Returns
    the scale applied. Same architecture and cost, varied codes.
    """
    generator = torch.Generator().manual_seed(seed)
    waveform = 0.1 * torch.randn(1, int(seconds * model.sample_rate), generator=generator)
    captured: list[torch.Tensor] = []
    project_in = model.quantizer.project_in
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        model.tokenize(waveform)
    finally:
        handle.remove()
    scale = 1.0 / float(captured[0].std())
    with torch.no_grad():
        project_in.weight.mul_(scale)
        project_in.bias.mul_(scale)
    return scale
