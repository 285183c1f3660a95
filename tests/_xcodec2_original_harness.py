"""Test-only: import the ORIGINAL X-Codec2 code (PyPI ``xcodec2==0.1.5``) and build it small.

The original package is our oracle for the original checkpoint layout. It cannot be
imported as published here, so this module:

* finds its sdist unpacked under ``third_party/`` (gitignored) or fetches it with pip into
  ``~/.cache/xcodec-tests`` (a fresh clone); offline, the tests skip and say why;
* puts two pure-Python dependencies it needs (``vector-quantize-pytorch==1.17.8`` for
  ``ResidualFSQ``, ``einops==0.8.0``) beside it, installed with ``pip --target``;
* stubs ``torchaudio`` (imported by ``bs_roformer5.py`` and never used) and replaces
  ``torchtune.modules.RotaryPositionalEmbeddings`` by :class:`TorchtuneRotary`, a faithful
  stand-in (see its docstring); both stubs live in ``sys.modules`` only while the original
  modules import, so nothing else in the test session sees them;
* builds ``XCodec2Model`` without the network: its constructor downloads
  ``facebook/w2v-bert-2.0`` and hard-codes the full sizes, so :func:`build_original_model`
  swaps the loader for a randomly initialised ``Wav2Vec2BertModel`` of the size asked and,
  for a small model, passes smaller sizes to the sub-module constructors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.machinery
import os
import subprocess
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _oracle import require_oracle
from torch import nn

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_VERSION = "0.1.5"
# Pinned by xcodec2 0.1.5's requirements; pure Python, so a `pip --target` folder suffices.
PURE_PYTHON_DEPENDENCIES = ("vector-quantize-pytorch==1.17.8", "einops==0.8.0")
SDIST_FOLDER = f"xcodec2-{ORIGINAL_VERSION}"
DEPENDENCY_FOLDER = "pydeps"


class TorchtuneRotary(nn.Module):
    """Stand-in for ``torchtune.modules.RotaryPositionalEmbeddings`` (torchtune 0.3.1).

    Same computation: input ``(batch, seq, heads, head_dim)``; position ``s`` rotates each
    ADJACENT pair ``(x[2i], x[2i+1])`` by the angle ``s * base**(-2i/dim)``, computed in
    float32 from a cos/sin cache of ``max_seq_len`` positions. The original X-Codec2 calls
    it on ``q``/``k`` laid out ``(batch, heads, time, head_dim)``, so "seq" is the heads
    axis there: head ``h`` is rotated by angle ``h * theta``, whatever the frame.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: int = 10_000) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.max_seq_len = max_seq_len
        theta = 1.0 / (base ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("theta", theta, persistent=False)
        positions = torch.arange(max_seq_len, dtype=theta.dtype)
        angles = torch.einsum("i, j -> ij", positions, theta).float()
        cache = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
        self.register_buffer("cache", cache, persistent=False)
        self.cache: torch.Tensor

    def forward(self, x: torch.Tensor, *, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        seq_len = x.size(1)
        rope_cache = self.cache[:seq_len] if input_pos is None else self.cache[input_pos]
        pairs = x.float().reshape(*x.shape[:-1], -1, 2)
        rope_cache = rope_cache.view(-1, pairs.size(1), 1, pairs.size(3), 2)
        rotated = torch.stack(
            [
                pairs[..., 0] * rope_cache[..., 0] - pairs[..., 1] * rope_cache[..., 1],
                pairs[..., 1] * rope_cache[..., 0] + pairs[..., 0] * rope_cache[..., 1],
            ],
            -1,
        )
        return rotated.flatten(3).type_as(x)


def _stub_module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


@contextlib.contextmanager
def _stubbed_imports() -> Iterator[None]:
    stubs = {
        "torchaudio": _stub_module("torchaudio"),
        "torchtune": _stub_module("torchtune"),
        "torchtune.modules": _stub_module("torchtune.modules", RotaryPositionalEmbeddings=TorchtuneRotary),
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


def _sources_ready(root: Path) -> bool:
    return (root / SDIST_FOLDER / "xcodec2" / "modeling_xcodec2.py").exists() and (
        root / DEPENDENCY_FOLDER / "vector_quantize_pytorch" / "residual_fsq.py"
    ).exists()


def _fetch_sources(root: Path) -> None:
    """Download the sdist and the pure-Python dependencies with pip (PyPI only)."""
    root.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = dict(os.environ, PIP_NO_INPUT="1")
    if not (root / SDIST_FOLDER).exists():
        download = root / "downloads"
        subprocess.run(
            [
                *pip,
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"xcodec2=={ORIGINAL_VERSION}",
                "-d",
                str(download),
            ],
            check=True,
            capture_output=True,
            timeout=300,
            env=env,
        )
        with tarfile.open(download / f"{SDIST_FOLDER}.tar.gz") as archive:
            try:
                archive.extractall(root, filter="data")
            except TypeError:  # Python without extraction filters (before 3.10.12)
                archive.extractall(root)
    if not (root / DEPENDENCY_FOLDER).exists():
        subprocess.run(
            [
                *pip,
                "install",
                "--no-deps",
                "--target",
                str(root / DEPENDENCY_FOLDER),
                *PURE_PYTHON_DEPENDENCIES,
            ],
            check=True,
            capture_output=True,
            timeout=300,
            env=env,
        )


def original_sources() -> Path:
    """The folder holding the unpacked original package and its dependencies, or a skip."""
    candidates = [REPO / "third_party", Path.home() / ".cache" / "xcodec-tests"]
    for root in candidates:
        if _sources_ready(root):
            return root
    cache = candidates[-1]
    try:
        _fetch_sources(cache)
    except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        pytest.skip(
            f"original xcodec2=={ORIGINAL_VERSION} not found under {candidates[0]} and pip could not "
            f"fetch it into {cache} ({type(exc).__name__}; offline?)"
        )
    if not _sources_ready(cache):
        pytest.skip(f"pip ran but {cache} still lacks the original xcodec2 sources")
    return cache


@functools.cache
def original_modules() -> types.SimpleNamespace:
    """Import the original package; returns its modules by short name."""
    require_oracle("transformers")
    require_oracle("einx")
    root = original_sources()
    for path in (root / SDIST_FOLDER, root / DEPENDENCY_FOLDER):
        if str(path) not in sys.path:
            # Appended, so an installed einops/vector_quantize_pytorch wins over ours.
            sys.path.append(str(path))
    with _stubbed_imports():
        modeling = importlib.import_module("xcodec2.modeling_xcodec2")
        config = importlib.import_module("xcodec2.configuration_bigcodec")
        roformer = importlib.import_module("xcodec2.vq.bs_roformer5")
        decoder = importlib.import_module("xcodec2.vq.codec_decoder_vocos")
        encoder = importlib.import_module("xcodec2.vq.codec_encoder")
    return types.SimpleNamespace(
        modeling=modeling, config=config, roformer=roformer, decoder=decoder, encoder=encoder
    )


@dataclasses.dataclass(frozen=True)
class OriginalSizes:
    """The sizes of an original model. The defaults are what the original code hard-codes."""

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
        return self == OriginalSizes()

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

    def xcodec2_overrides(self) -> dict[str, Any]:
        """Xcodec2Config fields for these sizes (what a small test checkpoint's config.json adds)."""
        return {
            "encoder_hidden_size": self.encoder_ngf,
            "hidden_size": self.hidden_size,
            "intermediate_size": 4 * self.hidden_size,
            "num_hidden_layers": self.decoder_layers,
            "num_attention_heads": self.decoder_heads,
            "num_key_value_heads": self.decoder_heads,
            "head_dim": self.hidden_size // self.decoder_heads,
            "quantization_dim": self.hidden_size + self.semantic_hidden_size,
            "semantic_model_config": {
                "hidden_size": self.semantic_hidden_size,
                "num_hidden_layers": 16,
                "num_attention_heads": self.semantic_heads,
                "intermediate_size": self.semantic_intermediate_size,
            },
        }


def _seamless_feature_extractor() -> Any:
    from transformers import SeamlessM4TFeatureExtractor

    # facebook/w2v-bert-2.0's preprocessor_config.json.
    return SeamlessM4TFeatureExtractor(
        feature_size=80,
        num_mel_bins=80,
        sampling_rate=16000,
        padding_value=1.0,
        stride=2,
        return_attention_mask=True,
    )


def build_original_model(sizes: OriginalSizes, *, seed: int = 0) -> Any:
    """The original ``XCodec2Model`` built offline, every parameter randomly perturbed, in eval mode.

    At full size only the two ``from_pretrained`` downloads are replaced. Smaller, the
    hard-coded sizes are replaced: the constructors of ``CodecEncoder_Transformer`` and
    ``CodecDecoderVocos`` get smaller keyword arguments, and ``fc_prior``/``fc_post_a``
    (hard-coded ``Linear(2048, 2048)``/``Linear(2048, 1024)``) are rebuilt at
    ``semantic + hidden`` width. Everything else is the original code.
    """
    from transformers import Wav2Vec2BertModel

    mods = original_modules()
    modeling = mods.modeling
    torch.manual_seed(seed)

    class _OfflineW2VBert:
        @staticmethod
        def from_pretrained(name: str, **kwargs: Any) -> Any:
            assert name == "facebook/w2v-bert-2.0", name
            return Wav2Vec2BertModel(sizes.w2v_bert_config())

    class _OfflineFeatureExtractor:
        @staticmethod
        def from_pretrained(name: str, **kwargs: Any) -> Any:
            assert name == "facebook/w2v-bert-2.0", name
            return _seamless_feature_extractor()

    patched: dict[str, Any] = {
        "Wav2Vec2BertModel": _OfflineW2VBert,
        "AutoFeatureExtractor": _OfflineFeatureExtractor,
    }
    if not sizes.is_full_size:
        patched["CodecEncoder_Transformer"] = functools.partial(
            modeling.CodecEncoder_Transformer, ngf=sizes.encoder_ngf, hidden_dim=sizes.hidden_size
        )
        patched["CodecDecoderVocos"] = functools.partial(
            modeling.CodecDecoderVocos,
            hidden_dim=sizes.hidden_size,
            depth=sizes.decoder_layers,
            heads=sizes.decoder_heads,
            pos_meb_dim=sizes.hidden_size // sizes.decoder_heads,
            vq_dim=sizes.hidden_size + sizes.semantic_hidden_size,
        )
    saved = {name: getattr(modeling, name) for name in patched}
    for name, value in patched.items():
        setattr(modeling, name, value)
    try:
        config = mods.config.BigCodecConfig(
            semantic_hidden_size=sizes.semantic_hidden_size,
            codec_encoder_hidden_size=sizes.hidden_size,
            codec_decoder_hidden_size=sizes.hidden_size,
            use_vocos=True,
        )
        model = modeling.XCodec2Model(config)
    finally:
        for name, value in saved.items():
            setattr(modeling, name, value)
    if not sizes.is_full_size:
        width = sizes.hidden_size + sizes.semantic_hidden_size
        model.fc_prior = nn.Linear(width, width)
        model.fc_post_a = nn.Linear(width, sizes.hidden_size)
    perturb_(model)
    spread_codes_(model)
    return model.eval()


@torch.no_grad()
def perturb_(model: nn.Module, scale: float = 0.05) -> None:
    """Add noise to every parameter, so that a swapped or skipped tensor changes the output.

    Snake ``alpha``/``bias`` start at zero and weight-norm gains at the weight's norm;
    noise on the log-scale parameters stays small, gains stay positive.
    """
    for name, parameter in model.named_parameters():
        noise = torch.randn_like(parameter) * scale
        if name.endswith("original0") or name.endswith("weight_g"):
            parameter.mul_(1.0 + noise.abs())
        else:
            parameter.add_(noise)


@torch.no_grad()
def spread_codes_(model: Any, acoustic_gain: float = 5.0, projection_gain: float = 4.0) -> None:
    """Scale a random model so that its FSQ input spans several levels on every digit.

    At random init the acoustic branch is ~5x weaker than the semantic one and the FSQ
    input stays near 0, so every frame gets the middle code (43690): a test would then
    not notice a broken acoustic encoder. Scaling the encoder's last gain and the
    quantiser's input projection makes the codes depend on both branches.
    """
    final_conv = model.CodecEnc.conv_final_block[1]
    final_conv.parametrizations.weight.original0.mul_(acoustic_gain)
    model.generator.quantizer.project_in.weight.mul_(projection_gain)


def legacy_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``parametrizations.weight.original0/1`` to ``weight_g``/``weight_v``.

    The hub's ``model.safetensors`` was written with the legacy ``torch.nn.utils.weight_norm``
    names (Transformers' conversion script reads ``weight_g``/``weight_v``); the 0.1.5 code
    builds its modules with the parametrization API instead. Both must load.
    """
    renamed = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[key] = value
    return renamed


def original_encode_inputs(wave: torch.Tensor, feature_extractor: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``XCodec2Model.encode_code`` feeds its two encoders, for a ``(batch, samples)`` wave.

    Returns ``(padded_wave (batch, 1, samples'), features (1, frames, 160))``. The original
    pads 1..320 samples (a full hop when the length is already a multiple: quirk), and
    computes the fbank features of batch item 0 only, after 160 more samples each side.
    """
    import torch.nn.functional as F

    pad = 320 - (wave.shape[1] % 320)
    padded = F.pad(wave, (0, pad))
    features = feature_extractor(
        F.pad(padded[0, :].cpu(), (160, 160)), sampling_rate=16000, return_tensors="pt"
    )
    return padded.unsqueeze(1), features.input_features
