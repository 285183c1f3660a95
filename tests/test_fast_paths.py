"""The speed paths of the convolutional stacks compute what the plain paths compute.

Polyphase anti-aliased activation, time-major (channels-last) convolutions and chunked
(overlap-save) runs of the acoustic encoder change only the order of float sums, so each
is checked against the plain computation within a relative 1e-5, in padded batches too;
the halo check shows that a halo narrower than the computed reach is caught.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xcodec.layers.alias_free import AntiAliasedActivation1d
from xcodec.layers.snake import Snake1d
from xcodec.ops.chunking import run_chunked
from xcodec.ops.layout import conv1d_time_major, is_time_major
from xcodec.stages.bigcodec import AcousticEncoder
from xcodec.stages.dac import DacDecoder, DacEncoder

RELATIVE = 1e-5


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _encoder(seed: int = 0) -> AcousticEncoder:
    torch.manual_seed(seed)
    encoder = AcousticEncoder(8, (2, 2, 4, 4, 5), 32).eval()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if name.endswith(("alpha", "beta")):
                parameter.normal_(0.0, 0.3)
    return encoder


@pytest.mark.parametrize(("channels", "steps"), [(6, 101), (16, 640), (3, 1), (3, 2), (5, 7)])
def test_polyphase_activation_equals_the_literal_one(channels: int, steps: int) -> None:
    torch.manual_seed(channels + steps)
    activation = AntiAliasedActivation1d(channels)
    with torch.no_grad():
        activation.act.alpha.normal_()
        activation.act.beta.normal_()
    x = torch.randn(3, channels, steps)
    lengths = torch.tensor([steps, max(1, steps // 2), max(1, steps // 3)])
    with torch.inference_mode():
        assert _relative_difference(activation(x), activation.reference_forward(x)) <= RELATIVE
        batched = activation(x, lengths)
        literal = activation.reference_forward(x, lengths)
        for index, length in enumerate(lengths.tolist()):
            alone = activation(x[index : index + 1, :, :length])
            # Batch invariance is exact: the same arithmetic on the same samples.
            assert torch.equal(batched[index, :, :length], alone[0])
            assert _relative_difference(batched[index, :, :length], literal[index, :, :length]) <= RELATIVE


def test_activation_takes_the_differentiable_path_for_training() -> None:
    torch.manual_seed(1)
    activation = AntiAliasedActivation1d(4)
    x = torch.randn(2, 4, 50, requires_grad=True)
    output = activation(x)
    output.square().sum().backward()
    assert x.grad is not None and activation.act.alpha.grad is not None
    with torch.inference_mode():
        assert _relative_difference(output.detach(), activation(x.detach())) <= RELATIVE


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "padding"), [(7, 1, 3, 9), (4, 2, 1, 1), (1, 1, 1, 0), (10, 5, 1, 3)]
)
def test_time_major_convolution_equals_conv1d(kernel: int, stride: int, dilation: int, padding: int) -> None:
    torch.manual_seed(kernel)
    conv = nn.Conv1d(6, 10, kernel, stride=stride, dilation=dilation, padding=padding)
    x = torch.randn(2, 6, 97)
    with torch.no_grad():
        output = conv1d_time_major(conv, x)
        assert is_time_major(output)
        assert _relative_difference(output, conv(x)) <= RELATIVE


def test_chunked_acoustic_encoder_equals_the_whole_run_in_a_padded_batch() -> None:
    encoder = _encoder()
    waveform = 0.1 * torch.randn(3, 1, 320 * 200)
    lengths = torch.tensor([320 * 200, 320 * 130 + 17, 1000])
    with torch.inference_mode():
        encoder.chunk_samples = encoder.trailing_chunk_samples = 0
        whole, whole_padded = encoder(waveform), encoder(waveform, lengths)
        # Many chunk joins in both stages (halos: 2048 samples, then 130 steps of 64 samples).
        encoder.chunk_samples, encoder.trailing_chunk_samples = 1024, 64 * 320
        chunked, chunked_padded = encoder(waveform), encoder(waveform, lengths)
        frames = encoder.output_lengths(lengths)
        assert _relative_difference(chunked, whole) <= RELATIVE
        for index, count in enumerate(frames.tolist()):
            expected = whole_padded[index, :, :count]
            assert _relative_difference(chunked_padded[index, :, :count], expected) <= RELATIVE


def test_leading_reach_bounds_the_receptive_field() -> None:
    """An input change at sample p moves no leading output farther than ``leading_reach`` from p.

    Exact: outputs outside the receptive field are computed from identical inputs. The
    bound is also tight enough to matter: the change does reach past half of it.
    """
    encoder = _encoder(1)
    stride, reach = encoder.chunked_stride, encoder.leading_reach()
    waveform = 0.1 * torch.randn(1, 1, 320 * 40)
    position = 320 * 20 + 5
    nudged = waveform.clone()
    nudged[..., position] += 0.5
    with torch.inference_mode():
        moved = (encoder._leading(nudged, None) != encoder._leading(waveform, None)).any(dim=1)[0]
    distances = (torch.nonzero(moved).flatten() * stride - position).abs()
    assert int(distances.max()) <= reach
    assert int(distances.max()) > reach // 2


def test_a_halo_below_the_reach_is_visible() -> None:
    encoder = _encoder(1)
    waveform = 0.1 * torch.randn(1, 1, 320 * 40)
    stride = encoder.chunked_stride
    with torch.inference_mode():
        whole = encoder._leading(waveform, None)
        halo = -(-(encoder.leading_reach() + stride) // stride) * stride
        enough = run_chunked(encoder._leading, waveform, None, chunk=1024, halo=halo, down=stride)
        short = run_chunked(encoder._leading, waveform, None, chunk=1024, halo=stride, down=stride)
    assert _relative_difference(enough, whole) <= RELATIVE
    assert _relative_difference(short, whole) > 1e-3


# ---- DAC (X-Codec's acoustic encoder and decoder) ------------------------------------------------


def _dac(seed: int = 2) -> tuple[DacEncoder, DacDecoder]:
    torch.manual_seed(seed)
    encoder = DacEncoder(8, (8, 5, 4, 2), 16).eval()
    decoder = DacDecoder(16, 64, (8, 5, 4, 2), odd_stride_output_padding=True, final_tanh=False).eval()
    with torch.no_grad():
        for module in (encoder, decoder):
            for name, parameter in module.named_parameters():
                if name.endswith("alpha"):
                    parameter.uniform_(0.5, 2.0)
    return encoder, decoder


def test_snake_in_one_buffer_equals_the_formula() -> None:
    snake = Snake1d(5)
    with torch.no_grad():
        snake.alpha.uniform_(0.2, 3.0)
    x = torch.randn(2, 5, 33, requires_grad=True)
    expected = x + (snake.alpha + 1e-9).reciprocal() * torch.sin(snake.alpha * x).pow(2)
    with torch.inference_mode():
        assert torch.equal(snake(x.detach()), expected.detach())  # same operations, same values
    snake(x).sum().backward()  # the training path keeps the graph
    assert x.grad is not None


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_chunked_dac_equals_the_whole_run_in_a_padded_batch(part: str) -> None:
    encoder, decoder = _dac()
    if part == "encoder":
        module: DacEncoder | DacDecoder = encoder
        inputs = 0.1 * torch.randn(3, 1, 12345)
        lengths = torch.tensor([12345, 7001, 2000])
        chunk = 800  # 2 000 samples of halo: several chunk joins on this short input
    else:
        module = decoder
        inputs = torch.randn(3, 16, 50)
        lengths = torch.tensor([50, 31, 9])
        chunk = 400  # 10 frames of output per chunk
    with torch.inference_mode():
        module.chunk_samples = 0
        whole, whole_padded = module(inputs), module(inputs, lengths)
        module.chunk_samples = chunk
        chunked, chunked_padded = module(inputs), module(inputs, lengths)
    assert chunked.shape == whole.shape
    assert _relative_difference(chunked, whole) <= RELATIVE
    for index, count in enumerate(module.output_lengths(lengths).tolist()):
        expected = whole_padded[index, :, :count]
        assert _relative_difference(chunked_padded[index, :, :count], expected) <= RELATIVE


def test_dac_reaches_bound_their_receptive_fields() -> None:
    """As for X-Codec2: a nudged input moves no output beyond the computed reach."""
    encoder, decoder = _dac(3)
    with torch.inference_mode():
        waveform = 0.1 * torch.randn(1, 1, 8000)
        nudged = waveform.clone()
        nudged[..., 4001] += 0.5
        moved = (encoder._leading(nudged, None) != encoder._leading(waveform, None)).any(dim=1)[0]
        distances = (torch.nonzero(moved).flatten() * encoder.chunked_stride - 4001).abs()
        assert int(distances.max()) <= encoder.leading_reach()

        steps = torch.randn(1, decoder.block[0].conv_t1.out_channels, 60)
        nudged = steps.clone()
        nudged[..., 30] += 1.0
        moved = (decoder._trailing(nudged, None) != decoder._trailing(steps, None)).any(dim=1)[0]
        positions = torch.nonzero(moved).flatten().double() / decoder.chunked_stride
        assert float((positions - 30).abs().max()) <= decoder.trailing_reach()
