"""Shared pieces of the tokenizer tests: a small deterministic codec and a corpus builder.

The fake codec lets these tests run in seconds and in subprocesses (``--codec-factory
test_dataset_support:make_fake_codec``); one test in test_dataset_tokenize.py uses a
tiny random X-Codec2 instead.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xcodec.api import Codec, PreparedAudio
from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult

TESTS_DIR = Path(__file__).resolve().parent
FACTORY = "test_dataset_support:make_fake_codec"


class EnergyCodec(CodecModel):
    """Codes = quantised frame statistics: codebook 0 the log energy, codebook 1 the mean level.

    Batch-invariant by construction (every frame is computed from its own samples only),
    and sensitive to every sample, so equal codes mean equal decoded audio to ~1e-3.
    """

    batch_invariant = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    @property
    def sample_rate(self) -> int:
        return 16000

    @property
    def hop_length(self) -> int:
        return 320

    @property
    def num_codebooks(self) -> int:
        return 2

    @property
    def codebook_size(self) -> int:
        return 1024

    def tokenize(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, *, bandwidth: float | None = None
    ) -> TokenizeResult:
        batch, samples = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long)
        frames = math.ceil(samples / self.hop_length)
        padded = torch.zeros(batch, frames * self.hop_length, dtype=waveforms.dtype)
        padded[:, :samples] = waveforms * self.scale
        framed = padded.view(batch, frames, self.hop_length).double()
        energy = (framed**2).mean(-1)
        level = framed.mean(-1)
        code_energy = ((torch.log10(energy + 1e-9) + 9.0) * 50.0).floor().clamp(0, 1023)
        code_level = ((level + 1.0) * 511.5).floor().clamp(0, 1023)
        codes = torch.stack([code_energy, code_level], dim=1).long()
        code_lengths = (lengths + self.hop_length - 1) // self.hop_length
        if int(lengths.min()) == 0:
            raise ValueError("cannot encode an empty waveform")
        # Kill-and-resume tests slow the job down so a kill lands mid-shard.
        time.sleep(float(os.environ.get("XCODEC_TEST_ENCODE_DELAY", "0")))
        return TokenizeResult(codes, code_lengths)

    def detokenize(
        self, audio_codes: torch.Tensor, code_lengths: torch.Tensor | None = None
    ) -> DetokenizeResult:
        raise NotImplementedError("the test codec only encodes")


def make_fake_codec(options: object, device: str | None) -> Codec:
    """A :data:`xcodec.dataset.pipeline.CodecFactory` for the fake codec."""
    batch_seconds = float(getattr(options, "batch_seconds", 120.0))
    return Codec(EnergyCodec(), "test/energy-codec", max_batch_seconds=batch_seconds)


# ---- corpus -----------------------------------------------------------------------------

GOOD_SYNTH = {
    # name: (sample rate, seconds, channels, soundfile subtype or None for the default)
    "tone_16k.wav": (16000, 0.9, 1, "PCM_16"),
    "sub/tone_22k.flac": (22050, 0.7, 1, None),
    "sub/tone_44k_24bit.wav": (44100, 0.5, 1, "PCM_24"),
    "sub/deeper/tone_48k_stereo.ogg": (48000, 0.6, 2, None),
    "tone_8k.wav": (8000, 1.3, 1, "PCM_16"),
    "stereo_48k.flac": (48000, 0.4, 2, None),
    "same_name.wav": (16000, 0.3, 1, "PCM_16"),
    "same_name.flac": (24000, 0.35, 1, None),
}
BAD = ("broken/empty.wav", "broken/truncated.wav", "broken/not_audio.wav", "broken/zero_length.wav")
REAL = ("speech_en.flac", "speech_cn.wav", "music.wav")


def _tone(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    columns = [
        0.3 * np.sin(2 * np.pi * (220 + 110 * c + 40 * seed) * t) * np.linspace(0.2, 1.0, t.size)
        + 0.02 * rng.standard_normal(t.size)
        for c in range(channels)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def build_corpus(root: Path, audio_dir: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Write good files (several formats, rates, stereo) and broken ones under ``root``.

    Returns (good paths, bad paths). With ``audio_dir`` the real recordings join the good ones.
    """
    import soundfile as sf

    good: list[Path] = []
    for seed, (name, (rate, seconds, channels, subtype)) in enumerate(GOOD_SYNTH.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _tone(rate, seconds, channels, seed), rate, subtype=subtype)
        good.append(path)
    if audio_dir is not None:
        for name in REAL:
            target = root / "real" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(audio_dir / name, target)
            good.append(target)
    bad = [root / name for name in BAD]
    bad[0].parent.mkdir(parents=True, exist_ok=True)
    bad[0].write_bytes(b"")
    full = root / "broken" / "_full.wav"
    sf.write(full, _tone(16000, 0.5, 1, 99), 16000, subtype="PCM_16")
    bad[1].write_bytes(full.read_bytes()[:30])  # cut inside the header
    full.unlink()
    bad[2].write_text("this is a text file, not audio\n" * 20)
    with wave.open(str(bad[3]), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    return good, bad


def subprocess_env() -> dict[str, str]:
    """Environment for a subprocess ``xcodec tokenize`` that can import the fake codec."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_fake_codec_is_batch_invariant_and_sensitive() -> None:
    codec = make_fake_codec(None, None)
    a = PreparedAudio(torch.from_numpy(_tone(16000, 0.5, 1, 1)[:, 0]), "a", 16000)
    b = PreparedAudio(torch.from_numpy(_tone(16000, 0.23, 1, 2)[:, 0]), "b", 16000)
    solo = [codec.encode_prepared([a])[0], codec.encode_prepared([b])[0]]
    together = codec.encode_prepared([a, b])
    for x, y in zip(solo, together, strict=True):
        assert torch.equal(x, y)
    quieter = PreparedAudio(a.waveform * 0.5, "quieter", 16000)
    assert not torch.equal(codec.encode_prepared([quieter])[0], solo[0])
