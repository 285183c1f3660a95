"""Test-only: import the ORIGINAL ``neucodec`` package (PyPI ``neucodec==0.0.6``) and build it small.

The package is the oracle for NeuCodec's and DistillNeuCodec's original layout and for
:mod:`xcodec.compat.neucodec`. It cannot be installed next to torch 2.13 (it requires
torchaudio, torchao and torchtune builds that do not exist for it), so this module:

* finds the pure-Python packages it runs on (``neucodec`` itself, ``vector-quantize-pytorch``,
  ``einops``, ``local-attention``, ``hyper-connections``, ``torch-einops-utils``, all pinned
  in :data:`PURE_PYTHON_PACKAGES`) under ``third_party/neucodec-0.0.6/`` (gitignored) or
  installs them with ``pip install --no-deps --target`` into
  ``~/.cache/xcodec-tests/neucodec-0.0.6``; offline, the tests skip and say why (and fail
  under ``CI=true``, as :func:`_oracle.require_oracle` does);
* takes torchtune's ``modules/position_embeddings.py`` (the ``RotaryPositionalEmbeddings``
  the decoder imports) out of the torchtune 0.3.1 wheel and loads that one file alone: the
  rest of torchtune would import torchao;
* stubs ``torchaudio`` while the package imports: ``load`` reads with soundfile, as
  ``torchaudio.load`` returns it (``(channels, samples)`` float32, rate), and
  ``transforms.Resample`` is :class:`SincResample`, torchaudio's default resampler
  (``sinc_interp_hann``, 6 zero crossings, roll-off 0.99) written from its documentation;
* builds ``NeuCodec`` and ``DistillNeuCodec`` offline: their constructors download
  ``facebook/w2v-bert-2.0`` / ``ntu-spml/distilhubert`` and hard-code the full sizes, so
  :func:`build_original_neucodec` and :func:`build_original_distill_neucodec` swap the
  loaders for randomly initialised Transformers models of the size asked and, when small,
  hand smaller sizes to the original sub-module classes. Everything else is the package's
  code.

Random init gives one constant code (the FSQ input sits near 0); the builders perturb
every parameter and scale ``fc_prior`` and the quantiser's ``project_in`` so codes vary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.machinery
import importlib.util
import math
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _oracle import require_oracle, running_in_ci
from torch import nn

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_VERSION = "0.0.6"
FOLDER = f"neucodec-{ORIGINAL_VERSION}"
# neucodec 0.0.6 and what it imports, all pure Python; versions current when this was written.
PURE_PYTHON_PACKAGES = (
    f"neucodec=={ORIGINAL_VERSION}",
    "vector-quantize-pytorch==1.17.8",
    "einops==0.8.0",
    "local-attention==1.11.2",
    "hyper-connections==0.4.11",
    "torch-einops-utils==0.2.0",
)
# The lowest torchtune neucodec 0.0.6 accepts; only one file of its wheel is used.
TORCHTUNE = "torchtune==0.3.1"
TORCHTUNE_FILE = "torchtune/modules/position_embeddings.py"
DEPENDENCY_FOLDER = "pydeps"
TORCHTUNE_COPY = "torchtune_position_embeddings.py"
INPUT_SAMPLE_RATE = 16_000
OUTPUT_SAMPLE_RATE = 24_000
DECODER_HOP = 480


# --------------------------------------------------------------------------- torchaudio stub
class SincResample(nn.Module):
    """Stand-in for ``torchaudio.transforms.Resample(orig_freq, new_freq)`` with its defaults.

    torchaudio's algorithm: both rates are divided by their gcd; the input is convolved
    (stride ``orig``) with ``new`` polyphase kernels of a Hann-windowed sinc low-pass at
    ``0.99 * min(orig, new) / 2``, ``width = ceil(6 * orig / base)`` taps each side; the
    output has ``ceil(new * samples / orig)`` samples. Input ``(..., samples)``.
    """

    def __init__(self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
        super().__init__()
        gcd = math.gcd(int(orig_freq), int(new_freq))
        self.orig = int(orig_freq) // gcd
        self.new = int(new_freq) // gcd
        base_freq = min(self.orig, self.new) * rolloff
        self.width = math.ceil(lowpass_filter_width * self.orig / base_freq)
        idx = torch.arange(-self.width, self.width + self.orig, dtype=torch.float64)[None, None] / self.orig
        t = torch.arange(0, -self.new, -1, dtype=torch.float64)[:, None, None] / self.new + idx
        t = (t * base_freq).clamp(-lowpass_filter_width, lowpass_filter_width)
        window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
        t = t * math.pi
        scale = base_freq / self.orig
        kernels = torch.where(t == 0, torch.tensor(1.0, dtype=t.dtype), t.sin() / t) * window * scale
        self.register_buffer("kernel", kernels.to(torch.float32), persistent=False)
        self.kernel: torch.Tensor

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.orig == self.new:
            return waveform
        shape = waveform.shape
        flat = waveform.reshape(-1, 1, shape[-1])
        num_samples = shape[-1]
        flat = nn.functional.pad(flat, (self.width, self.width + self.orig))
        resampled = nn.functional.conv1d(flat, self.kernel.to(flat.dtype), stride=self.orig)
        resampled = resampled.transpose(1, 2).reshape(flat.shape[0], -1)
        target = math.ceil(self.new * num_samples / self.orig)
        return resampled[..., :target].reshape(*shape[:-1], -1)


def _torchaudio_load(path: Any) -> tuple[torch.Tensor, int]:
    """``torchaudio.load``'s result: ((channels, samples) float32 in [-1, 1], rate)."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(rate)


def _stub_module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


def _torchtune_rotary(root: Path) -> type[nn.Module]:
    """torchtune 0.3.1's ``RotaryPositionalEmbeddings``, its file loaded alone (it imports only torch)."""
    path = root / TORCHTUNE_COPY
    spec = importlib.util.spec_from_file_location("_torchtune_position_embeddings", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RotaryPositionalEmbeddings  # type: ignore[no-any-return]


@contextlib.contextmanager
def _stubbed_imports(root: Path) -> Iterator[None]:
    transforms = _stub_module("torchaudio.transforms", Resample=SincResample)
    stubs = {
        "torchaudio": _stub_module("torchaudio", load=_torchaudio_load, transforms=transforms),
        "torchaudio.transforms": transforms,
        "torchtune": _stub_module("torchtune"),
        "torchtune.modules": _stub_module(
            "torchtune.modules", RotaryPositionalEmbeddings=_torchtune_rotary(root)
        ),
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


# --------------------------------------------------------------------------- sources
def _sources_ready(root: Path) -> bool:
    deps = root / DEPENDENCY_FOLDER
    return (
        (deps / "neucodec" / "model.py").exists()
        and (deps / "local_attention" / "transformer.py").exists()
        and (deps / "vector_quantize_pytorch" / "residual_fsq.py").exists()
        and (root / TORCHTUNE_COPY).exists()
    )


def _fetch_sources(root: Path) -> None:
    """pip-install the pure-Python packages and copy torchtune's one file (PyPI only)."""
    root.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = dict(os.environ, PIP_NO_INPUT="1")
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=300, env=env)
    if not (root / DEPENDENCY_FOLDER / "neucodec" / "model.py").exists():
        run([*pip, "install", "--no-deps", "--target", str(root / DEPENDENCY_FOLDER), *PURE_PYTHON_PACKAGES])
    if not (root / TORCHTUNE_COPY).exists():
        downloads = root / "downloads"
        run([*pip, "download", "--no-deps", "--only-binary", ":all:", TORCHTUNE, "-d", str(downloads)])
        wheel = next(downloads.glob("torchtune-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            (root / TORCHTUNE_COPY).write_bytes(archive.read(TORCHTUNE_FILE))


def _unavailable(message: str) -> None:
    if running_in_ci():
        pytest.fail(f"{message}; CI=true, so this fails instead of skipping", pytrace=False)
    pytest.skip(message)


def original_sources() -> Path:
    """The folder holding the package and its dependencies (``pydeps/``), or a skip."""
    candidates = [REPO / "third_party" / FOLDER, Path.home() / ".cache" / "xcodec-tests" / FOLDER]
    for root in candidates:
        if _sources_ready(root):
            return root
    cache = candidates[-1]
    try:
        _fetch_sources(cache)
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, StopIteration) as exc:
        _unavailable(
            f"original neucodec=={ORIGINAL_VERSION} not found under {candidates[0]} and pip could not "
            f"install it into {cache} ({type(exc).__name__}; offline?)"
        )
    if not _sources_ready(cache):
        _unavailable(f"pip ran but {cache} still lacks the original neucodec sources")
    return cache


@functools.cache
def original_modules() -> types.SimpleNamespace:
    """Import the package; its modules by short name (``model``, ``encoder``, ``distill``, ...)."""
    require_oracle("transformers")
    require_oracle("einx")
    root = original_sources()
    deps = str(root / DEPENDENCY_FOLDER)
    if deps not in sys.path:
        # Appended, so installed copies of the shared pure-Python packages win over ours.
        sys.path.append(deps)
    with _stubbed_imports(root):
        model = importlib.import_module("neucodec.model")
        encoder = importlib.import_module("neucodec.codec_encoder")
        distill = importlib.import_module("neucodec.codec_encoder_distill")
        decoder = importlib.import_module("neucodec.codec_decoder_vocos")
        module = importlib.import_module("neucodec.module")
    return types.SimpleNamespace(
        model=model, encoder=encoder, distill=distill, decoder=decoder, module=module
    )


# --------------------------------------------------------------------------- sizes
@dataclasses.dataclass(frozen=True)
class DecoderSizes:
    """The shared generator (FSQ + Vocos decoder). Defaults: what the package hard-codes."""

    hidden_size: int = 1024
    layers: int = 12
    heads: int = 16
    vq_dim: int = 2048
    hop_length: int = DECODER_HOP

    def build(self, mods: types.SimpleNamespace) -> nn.Module:
        return mods.decoder.CodecDecoderVocos(  # type: ignore[no-any-return]
            hidden_dim=self.hidden_size,
            depth=self.layers,
            heads=self.heads,
            pos_meb_dim=self.hidden_size // self.heads,
            hop_length=self.hop_length,
            vq_dim=self.vq_dim,
        )


@dataclasses.dataclass(frozen=True)
class NeuCodecSizes:
    """An original ``NeuCodec``'s sizes. The defaults are the published model's."""

    encoder_ngf: int = 48
    hidden_size: int = 1024
    decoder_layers: int = 12
    decoder_heads: int = 16
    semantic_hidden_size: int = 1024
    semantic_layers: int = 24
    semantic_heads: int = 16
    semantic_intermediate_size: int = 4096

    @property
    def is_full_size(self) -> bool:
        return self == NeuCodecSizes()

    @property
    def decoder(self) -> DecoderSizes:
        return DecoderSizes(
            hidden_size=self.hidden_size,
            layers=self.decoder_layers,
            heads=self.decoder_heads,
            vq_dim=self.hidden_size + self.semantic_hidden_size,
        )

    def w2v_bert_config(self) -> Any:
        from transformers import Wav2Vec2BertConfig

        # Defaults of Wav2Vec2BertConfig are facebook/w2v-bert-2.0's config.json.
        return Wav2Vec2BertConfig(
            hidden_size=self.semantic_hidden_size,
            num_hidden_layers=self.semantic_layers,
            num_attention_heads=self.semantic_heads,
            intermediate_size=self.semantic_intermediate_size,
            output_hidden_states=True,
        )


@dataclasses.dataclass(frozen=True)
class DistillSizes:
    """An original ``DistillNeuCodec``'s sizes. The defaults are the published model's.

    ``encoder_*``: ``codec_encoder_distill.Encoder`` (ConvNeXt/Snake/GRN stages, strides
    zipped with ``dims[1:]``, so three of the four strides are used); ``local_*``: the
    ``CompressedLocalEncoderWithCache`` after it (its width is ``encoder_feature_dim``;
    ``LocalTrans.builder`` fixes 6 heads of ``dim // 4``); ``acoustic_dim``:
    ``fc_sq_prior``'s output; the semantic side is a DistilHuBERT-shaped ``HubertModel``
    and ``SemanticEncoder(semantic_hidden_size, semantic_hidden_size, semantic_adapter_size)``.
    """

    encoder_dims: tuple[int, ...] = (32, 64, 128, 256)
    encoder_depths: tuple[int, ...] = (1, 1, 1, 2)
    encoder_strides: tuple[int, ...] = (4, 4, 4, 4)
    encoder_feature_dim: int = 512
    local_window_size: int = 300
    local_compress_rate: int = 5
    local_depth: int = 5
    acoustic_dim: int = 768
    semantic_hidden_size: int = 768
    semantic_layers: int = 2
    semantic_heads: int = 12
    semantic_intermediate_size: int = 3072
    semantic_conv_dim: int = 512
    semantic_adapter_size: int = 1024
    hidden_size: int = 1024
    decoder_layers: int = 12
    decoder_heads: int = 16
    vq_dim: int = 2048

    @property
    def is_full_size(self) -> bool:
        return self == DistillSizes()

    @property
    def decoder(self) -> DecoderSizes:
        return DecoderSizes(
            hidden_size=self.hidden_size,
            layers=self.decoder_layers,
            heads=self.decoder_heads,
            vq_dim=self.vq_dim,
        )

    def hubert_config(self) -> Any:
        from transformers import HubertConfig

        # ntu-spml/distilhubert's config.json: HubertConfig's defaults with 2 layers.
        return HubertConfig(
            hidden_size=self.semantic_hidden_size,
            num_hidden_layers=self.semantic_layers,
            num_attention_heads=self.semantic_heads,
            intermediate_size=self.semantic_intermediate_size,
            conv_dim=(self.semantic_conv_dim,) * 7,
            conv_bias=False,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            output_hidden_states=True,
        )

    def build_acoustic_encoder(self, mods: types.SimpleNamespace) -> nn.Module:
        """``DistillCodecEncoder`` with these sizes (the package's classes, its forward)."""
        distill = mods.distill
        module = distill.DistillCodecEncoder.__new__(distill.DistillCodecEncoder)
        nn.Module.__init__(module)
        module.encoder = distill.Encoder(
            feature_dim=self.encoder_feature_dim,
            strides=self.encoder_strides,
            depths=self.encoder_depths,
            dims=self.encoder_dims,
        )
        module.en_encoder = distill.CompressedLocalEncoderWithCache(
            feature_dim=self.encoder_feature_dim,
            local_window_size=self.local_window_size,
            compress_rate=self.local_compress_rate,
            cache_size=0,
            depth=self.local_depth,
            use_dynamic_pos_bias=True,
        )
        return module  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- feature extractors
def w2v_bert_feature_extractor() -> Any:
    """facebook/w2v-bert-2.0's preprocessor_config.json."""
    from transformers import SeamlessM4TFeatureExtractor

    return SeamlessM4TFeatureExtractor(
        feature_size=80,
        num_mel_bins=80,
        sampling_rate=16000,
        padding_value=1.0,
        stride=2,
        return_attention_mask=True,
    )


def distilhubert_feature_extractor() -> Any:
    """ntu-spml/distilhubert's preprocessor_config.json (no normalisation, zero padding)."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=False,
    )


# --------------------------------------------------------------------------- builders
@contextlib.contextmanager
def _patched(module: types.ModuleType, **values: Any) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _offline_loader(expected: str, build: Any) -> Any:
    class _Offline:
        @staticmethod
        def from_pretrained(name: str, **kwargs: Any) -> Any:
            assert name == expected, name
            return build()

    return _Offline


def build_original_neucodec(sizes: NeuCodecSizes = NeuCodecSizes(), *, seed: int = 0) -> Any:
    """The package's ``NeuCodec(24000, 480)`` built offline, parameters perturbed, in eval mode."""
    from transformers import Wav2Vec2BertModel

    mods = original_modules()
    model_module = mods.model
    torch.manual_seed(seed)
    patches: dict[str, Any] = {
        "Wav2Vec2BertModel": _offline_loader(
            "facebook/w2v-bert-2.0", lambda: Wav2Vec2BertModel(sizes.w2v_bert_config())
        ),
        "AutoFeatureExtractor": _offline_loader("facebook/w2v-bert-2.0", w2v_bert_feature_extractor),
    }
    if not sizes.is_full_size:
        width = sizes.semantic_hidden_size
        patches["SemanticEncoder"] = lambda *args: mods.module.SemanticEncoder(width, width, width)
        patches["CodecEncoder"] = functools.partial(
            mods.encoder.CodecEncoder, ngf=sizes.encoder_ngf, hidden_dim=sizes.hidden_size
        )
        patches["CodecDecoderVocos"] = lambda hop_length: dataclasses.replace(
            sizes.decoder, hop_length=hop_length
        ).build(mods)
    with _patched(model_module, **patches):
        model = model_module.NeuCodec(OUTPUT_SAMPLE_RATE, DECODER_HOP)
    if not sizes.is_full_size:
        width = sizes.hidden_size + sizes.semantic_hidden_size
        model.fc_prior = nn.Linear(width, width)
        model.fc_post_a = nn.Linear(width, sizes.hidden_size)
    perturb_(model)
    spread_codes_(model)
    return model.eval()


def build_original_distill_neucodec(sizes: DistillSizes = DistillSizes(), *, seed: int = 0) -> Any:
    """The package's ``DistillNeuCodec(24000, 480)`` built offline, parameters perturbed, in eval mode."""
    from transformers import HubertModel

    mods = original_modules()
    model_module = mods.model
    torch.manual_seed(seed)
    patches: dict[str, Any] = {
        "HubertModel": _offline_loader("ntu-spml/distilhubert", lambda: HubertModel(sizes.hubert_config())),
        "AutoFeatureExtractor": _offline_loader("ntu-spml/distilhubert", distilhubert_feature_extractor),
    }
    if not sizes.is_full_size:
        patches["SemanticEncoder"] = lambda *args: mods.module.SemanticEncoder(
            sizes.semantic_hidden_size, sizes.semantic_hidden_size, sizes.semantic_adapter_size
        )
        patches["DistillCodecEncoder"] = lambda: sizes.build_acoustic_encoder(mods)
        patches["CodecDecoderVocos"] = lambda hop_length: dataclasses.replace(
            sizes.decoder, hop_length=hop_length
        ).build(mods)
    with _patched(model_module, **patches):
        model = model_module.DistillNeuCodec(OUTPUT_SAMPLE_RATE, DECODER_HOP)
    if not sizes.is_full_size:
        model.fc_sq_prior = nn.Linear(sizes.encoder_feature_dim, sizes.acoustic_dim)
        model.fc_prior = nn.Linear(sizes.semantic_hidden_size + sizes.acoustic_dim, sizes.vq_dim)
        model.fc_post_a = nn.Linear(sizes.vq_dim, sizes.hidden_size)
    perturb_(model)
    spread_codes_(model)
    return model.eval()


@torch.no_grad()
def perturb_(model: nn.Module, scale: float = 0.05) -> None:
    """Add noise to every parameter, so that a swapped or skipped tensor changes the output.

    Weight-norm gains (``weight_g``, parametrization ``original0``) are scaled instead, so
    they stay positive.
    """
    for name, parameter in model.named_parameters():
        noise = torch.randn_like(parameter) * scale
        if name.endswith("original0") or name.endswith("weight_g"):
            parameter.mul_(1.0 + noise.abs())
        else:
            parameter.add_(noise)


@torch.no_grad()
def spread_codes_(model: Any, prior_gain: float = 4.0, projection_gain: float = 4.0) -> None:
    """Scale ``fc_prior`` and the quantiser's ``project_in`` so the FSQ input spans several levels.

    At random init the FSQ input stays near 0 and every frame gets one code, so a test
    would not notice a broken branch.
    """
    model.fc_prior.weight.mul_(prior_gain)
    model.generator.quantizer.project_in.weight.mul_(projection_gain)


def original_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as the hub's ``pytorch_model.bin`` holds it: no ``semantic_model.`` tensors.

    (The package builds the semantic model from its own hub repo at run time.)
    """
    return {
        key: value.detach().clone()
        for key, value in model.state_dict().items()
        if not key.startswith("semantic_model.")
    }


def save_original_layout(model: nn.Module, folder: Path) -> Path:
    """Write ``pytorch_model.bin`` (+ an empty ``meta.yaml``) as the hub repo holds them; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(original_state_dict(model), folder / "pytorch_model.bin")
    (folder / "meta.yaml").write_text("")
    return folder


def save_semantic_model(model: Any, folder: Path) -> Path:
    """The original's semantic model (random weights) in the Transformers layout, for ``semantic_model=``."""
    model.semantic_model.save_pretrained(folder)
    return folder
