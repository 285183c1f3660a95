"""Tiny random checkpoints built with our own models, for CLI/API tests that need no oracle.

Weights are perturbed away from PyTorch's default init: at default init every frame of a
tiny X-Codec2 lands on the middle FSQ code, which would hide a broken pipeline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xcodec.configs.w2v_bert import Wav2Vec2BertConfig
from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.models.xcodec2 import Xcodec2Model


def tiny_xcodec2_config() -> Xcodec2Config:
    return Xcodec2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        encoder_hidden_size=8,
        semantic_model_config=Wav2Vec2BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            conv_depthwise_kernel_size=5,
        ),
        quantization_dim=96,
        quantization_levels=(4, 4, 4, 4),
    )


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


def tiny_xcodec2(seed: int = 0) -> Xcodec2Model:
    torch.manual_seed(seed)
    model = Xcodec2Model(tiny_xcodec2_config()).eval()
    perturb_(model, seed)
    # Widen the projection into the quantiser so a tiny model spreads over many codes.
    with torch.no_grad():
        model.quantizer.project_in.weight.mul_(8.0)
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
