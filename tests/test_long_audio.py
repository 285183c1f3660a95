"""Long audio: window planning, stitching, and agreement of windowed with whole-file results.

Default-suite tests use a frame-local fake codec (whose windowed result must equal the
whole-file result exactly when the context covers its receptive field) and the tiny
X-Codec2. The slow test measures peak RSS and agreement with a full-size random model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _asserts import assert_codes_vary
from _tiny import spread_fsq_codes_, tiny_xcodec2

from xcodec.api import Codec, PreparedAudio
from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.windowing import WindowConfig, plan_windows, stitch_audio, stitch_codes

HERE = Path(__file__).resolve().parent


class LocalCodec(CodecModel):
    """A fake codec whose frame ``j`` depends on frames ``j - 1 .. j + 1`` only (zero outside).

    Rate 1600 Hz, hop 16: 100 frames per second. Code = quantised mean of three frames;
    decoded sample = mean of the three neighbouring codes (so decode has context too).
    """

    batch_invariant = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    sample_rate = 1600
    hop_length = 16
    num_codebooks = 2
    codebook_size = 64

    @staticmethod
    def _neighbours(values: torch.Tensor, frames: int) -> torch.Tensor:
        """(batch, frames) -> mean over j-1..j+1 with zeros past [0, frames)."""
        values = values[:, :frames]
        padded = F.pad(values, (1, 1))
        return (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3

    def tokenize(self, waveforms, lengths=None, *, bandwidth=None):
        B, T = waveforms.shape
        lengths = torch.full((B,), T) if lengths is None else lengths.cpu()
        hop = self.hop_length
        frames = math.ceil(T / hop)
        codes = torch.zeros(B, 2, frames, dtype=torch.long)
        for b in range(B):
            n = int(lengths[b])
            own = F.pad(waveforms[b, :n], (0, frames * hop - n)).view(frames, hop).mean(-1)
            smooth = self._neighbours(own[None], math.ceil(n / hop))[0]
            codes[b, 0, : smooth.shape[0]] = ((smooth + 1) * 32).floor().clamp(0, 63).long()
            codes[b, 1, : smooth.shape[0]] = ((own[: smooth.shape[0]] + 1) * 32).floor().clamp(0, 63).long()
        code_lengths = (lengths + hop - 1) // hop
        return TokenizeResult(codes, code_lengths)

    def detokenize(self, audio_codes, code_lengths=None):
        B, _, frames = audio_codes.shape
        code_lengths = torch.full((B,), frames) if code_lengths is None else code_lengths.cpu()
        audio = torch.zeros(B, frames * self.hop_length)
        for b in range(B):
            n = int(code_lengths[b])
            value = audio_codes[b, 0, :n].double() + 0.01 * audio_codes[b, 1, :n].double()
            audio[b, : n * self.hop_length] = (
                self._neighbours(value[None], n)[0].repeat_interleave(self.hop_length).float()
            )
        return DetokenizeResult(audio, code_lengths * self.hop_length)


def _local_codec(window: float, context: float, crossfade: float) -> Codec:
    return Codec(LocalCodec(), windows=WindowConfig(window, context, crossfade), max_batch_seconds=1.0)


# ---- planning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 50, 51, 52, 99, 100, 101, 250, 1003])
def test_plan_keeps_every_frame_once_with_context(num_frames: int) -> None:
    window, context = 50, 6
    plan = plan_windows(num_frames, window, context)
    if num_frames <= window:
        assert len(plan) == 1 and plan[0].start == 0 and plan[0].keep_stop is None
        return
    kept: list[int] = []
    for k, w in enumerate(plan):
        assert w.stop - w.start == window and w.start >= 0 and w.stop <= num_frames
        stop = num_frames if w.keep_stop is None else w.keep_stop
        kept.extend(range(w.keep_start, stop))
        if k > 0:  # an inner left edge: context frames before the kept range
            assert w.keep_start - w.start >= context
        if w.keep_stop is not None:  # an inner right edge
            assert w.stop - w.keep_stop >= context
    assert kept == list(range(num_frames))
    assert plan[-1].stop == num_frames


def test_stitching_a_global_signal_gives_it_back() -> None:
    # Windows cut from one signal must stitch back to it, cross-fade and all.
    hop, frames = 7, 230
    signal = torch.randn(frames * hop, dtype=torch.float64)
    codes = torch.arange(2 * frames).view(2, frames)
    plan = plan_windows(frames, 40, 5)
    assert len(plan) > 3
    pieces = [signal[w.start * hop : w.stop * hop] for w in plan]
    torch.testing.assert_close(
        stitch_audio(plan, pieces, hop, crossfade_frames=4), signal, rtol=0, atol=1e-12
    )
    code_pieces = [codes[:, w.start : w.stop] for w in plan]
    assert torch.equal(stitch_codes(plan, code_pieces), codes)


def test_window_config_rejects_impossible_geometry() -> None:
    with pytest.raises(ValueError, match="twice its context"):
        WindowConfig(2.0, 1.0, 0.5).frames(50.0)
    with pytest.raises(ValueError, match="crossfade_seconds"):
        WindowConfig(10.0, 1.0, 1.5).frames(50.0)


# ---- the Codec with a frame-local fake: windowed == whole exactly --------------------------------


@pytest.mark.parametrize("num_samples", [1, 15, 16, 17, 799, 800, 801, 3203, 16000 + 5])
def test_local_codec_windowed_equals_whole(num_samples: int) -> None:
    generator = torch.Generator().manual_seed(num_samples)
    wave = torch.rand(num_samples, generator=generator) * 1.8 - 0.9
    codec = _local_codec(window=0.5, context=0.03, crossfade=0.02)  # 50 frames, 3 of context, fade 2
    got = codec.encode_prepared([PreparedAudio(wave, "x", 1600)])[0]
    whole = codec.model.tokenize(wave[None])
    expected = whole.audio_codes[0, :, : int(whole.code_lengths[0])]
    assert torch.equal(got, expected)
    decoded = codec.decode_checked([expected])[0]
    torch.testing.assert_close(decoded, codec.model.detokenize(expected[None]).audio[0], rtol=1e-6, atol=1e-6)


def test_local_codec_without_context_breaks_at_the_joins() -> None:
    # The test above can fail: with no context the frames at the joins see zeros.
    wave = torch.linspace(0.1, 0.9, 8000)
    codec = _local_codec(window=0.5, context=0.0, crossfade=0.0)
    got = codec.encode_prepared([PreparedAudio(wave, "x", 1600)])[0]
    expected = codec.model.tokenize(wave[None]).audio_codes[0]
    differ = (got != expected).any(0).nonzero().flatten().tolist()
    assert differ and all(min(abs(f - 50 * k) for k in range(1, 11)) <= 1 for f in differ)


# ---- the tiny X-Codec2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> CodecModel:
    return tiny_xcodec2()


def _chirp(seconds: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
    return 0.3 * torch.sin(2 * torch.pi * (100 + 200 * t) * t) + 0.05 * noise


def test_audio_up_to_one_window_takes_the_whole_file_path(tiny: CodecModel) -> None:
    codec = Codec(tiny, windows=WindowConfig(1.0, 0.2, 0.1))  # 50-frame windows
    for seconds in (0.3, 1.0):  # 1.0 s = exactly one window of frames
        wave = _chirp(seconds)
        whole = tiny.tokenize(wave[None])
        expected = whole.audio_codes[0, :, : int(whole.code_lengths[0])]
        assert_codes_vary(expected, min_distinct=5)
        assert torch.equal(codec.encode(wave, sampling_rate=16000), expected)  # type: ignore[arg-type]
        assert torch.equal(codec.decode(expected), tiny.detokenize(expected[None]).audio[0])  # type: ignore[arg-type]


def test_windowed_encode_keeps_each_windows_central_frames(tiny: CodecModel) -> None:
    codec = Codec(tiny, windows=WindowConfig(0.6, 0.1, 0.06))  # 30 frames, 5 of context
    wave = _chirp(1.7, seed=3)
    got = codec.encode(wave, sampling_rate=16000)
    assert isinstance(got, torch.Tensor)
    assert_codes_vary(got, min_distinct=10)
    plan = plan_windows(math.ceil(wave.shape[-1] / 320), 30, 5)
    assert len(plan) >= 3
    # Independently: frame g comes from the window where g lies farthest from any inner edge.
    window_codes = []
    for w in plan:
        out = tiny.tokenize(wave[None, w.start * 320 : w.stop * 320])
        window_codes.append(out.audio_codes[0, :, : int(out.code_lengths[0])])
    total = plan[-1].start + window_codes[-1].shape[-1]
    assert got.shape[-1] == total == tiny.tokenize(wave[None]).code_lengths[0]

    def margin(k: int, g: int) -> float:
        w = plan[k]
        left = math.inf if k == 0 else g - w.start
        right = math.inf if k == len(plan) - 1 else w.stop - 1 - g
        return min(left, right) if w.start <= g < w.start + window_codes[k].shape[-1] else -1

    for g in range(total):
        best = max(range(len(plan)), key=lambda k: margin(k, g))
        assert margin(best, g) >= 5
        assert torch.equal(got[:, g], window_codes[best][:, g - plan[best].start]), g


def test_tiny_windowed_agrees_with_whole_file(tiny: CodecModel) -> None:
    # Not exact (the semantic encoder attends globally and normalises features per
    # window), but close: most frames agree and every frame is produced.
    codec = Codec(tiny, windows=WindowConfig(1.0, 0.2, 0.1))
    wave = _chirp(3.3, seed=5)
    got = codec.encode(wave, sampling_rate=16000)
    whole = tiny.tokenize(wave[None]).audio_codes[0]
    assert isinstance(got, torch.Tensor) and got.shape == whole.shape
    assert_codes_vary(whole, min_distinct=20)  # agreement on a few codes would mean little
    assert (got == whole).float().mean() >= 0.9


# ---- full size: bounded memory and agreement on real recordings (slow) -------------------------------


@pytest.mark.slow
def test_full_size_long_audio_memory_and_agreement(audio_dir: Path, tmp_path: Path) -> None:
    """Full-size random X-Codec2 (FSQ input spread so codes vary) on the real recordings, tiled.

    Memory: a 10-minute file encoded by a process that loads the encoder (as ``xcodec
    encode`` and ``xcodec tokenize`` do) and decoded by one that loads the decoder, each
    in a fresh process so ru_maxrss is that job's alone. Agreement: windowed against
    whole-file encode and decode on 2.6 minutes, where whole-file processing still fits.
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}

    def probe(*args: str) -> dict[str, float]:
        report = tmp_path / f"{args[0]}.json"
        command = [sys.executable, str(HERE / "test_long_audio.py"), *args, "--report", str(report)]
        subprocess.run(command, check=True, env=env, timeout=3 * 3600)
        return json.loads(report.read_text())

    checkpoint = tmp_path / "checkpoint"
    probe("build", str(checkpoint))
    repeats = "16"  # the three recordings (39.2 s) 16 times: 10.5 minutes
    encoded = probe(
        "encode", str(checkpoint), str(audio_dir), "--repeats", repeats, "--codes", str(tmp_path / "c.pt")
    )
    decoded = probe("decode", str(checkpoint), str(audio_dir), "--codes", str(tmp_path / "c.pt"))
    assert encoded["audio_seconds"] >= 600
    assert encoded["distinct_codes"] >= 1000  # varied codes: the agreement below can fail
    assert encoded["peak_rss_gib"] <= 3.0
    assert decoded["peak_rss_gib"] <= 3.0
    compared = probe("compare", str(checkpoint), str(audio_dir), "--repeats", "4")
    # Random weights are the worst case for windowing: untrained attention is diffuse, so
    # every frame depends on the whole file (measured: 48% of tokens agree, decode 29.9 dB;
    # bench/RESULTS.md). The targets (99% at joins, 30 dB) are for the published
    # weights, which cannot be fetched here. These floors still catch a stitching fault:
    # frames shifted by one give ~0 agreement among 2 000+ distinct codes, a wrong fade ~0 dB.
    assert compared["token_agreement"] >= 0.3
    assert compared["decode_snr_db"] >= 20.0


# ---- the probe the slow test runs in subprocesses (python tests/test_long_audio.py STAGE ...) -------


def _recordings(audio_dir: Path, repeats: int) -> torch.Tensor:
    from xcodec.audio import load_audio

    names = ("speech_en.flac", "speech_cn.wav", "music.wav")
    return torch.cat([load_audio(audio_dir / name, 16000).waveform for name in names] * repeats)


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _probe(argv: list[str]) -> None:
    """One stage of the slow long-audio test; writes a JSON report.

    build CHECKPOINT: a full-size random X-Codec2 with its FSQ input spread, saved.
    encode CHECKPOINT AUDIO_DIR --repeats N --codes FILE: windowed encode with the encoder
        only; peak RSS, timing, distinct codes; the codes saved to FILE.
    decode CHECKPOINT AUDIO_DIR --codes FILE: windowed decode with the decoder only.
    compare CHECKPOINT AUDIO_DIR --repeats N: windowed against whole-file: token
        agreement (overall and within 1 s of joins), SNR of windowed against whole-file
        decode of the same codes (overall and per join).
    """
    import argparse
    import time

    from xcodec.models.xcodec2 import Xcodec2Model

    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["build", "encode", "decode", "compare"])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("audio_dir", type=Path, nargs="?")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--codes", type=Path)
    parser.add_argument("--window", type=float, nargs=3, default=None, metavar=("WINDOW", "CONTEXT", "FADE"))
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    windows = WindowConfig(*args.window) if args.window else WindowConfig()
    result: dict[str, object] = {"stage": args.stage, "window": list(dataclasses.astuple(windows))}

    if args.stage == "build":
        from xcodec.configs.xcodec2 import Xcodec2Config

        torch.manual_seed(0)
        model = Xcodec2Model(Xcodec2Config()).eval()
        result["fsq_scale"] = spread_fsq_codes_(model)  # else every frame is the middle code
        model.save_pretrained(args.checkpoint)
    elif args.stage == "encode":
        model = Xcodec2Model.from_pretrained(args.checkpoint, parts="encoder")
        codec = Codec(model, windows=windows)
        wave = _recordings(args.audio_dir, args.repeats)
        result["peak_rss_after_load_gib"] = _peak_rss_gib()
        started = time.perf_counter()
        codes = codec.encode_prepared([PreparedAudio(wave, "recordings", 16000)])[0]
        result["encode_seconds"] = time.perf_counter() - started
        result["peak_rss_gib"] = _peak_rss_gib()
        result["audio_seconds"] = wave.shape[-1] / 16000
        result["frames"] = int(codes.shape[-1])
        result["distinct_codes"] = int(codes.unique().numel())
        torch.save(codes, args.codes)
    elif args.stage == "decode":
        model = Xcodec2Model.from_pretrained(args.checkpoint, parts="decoder")
        codec = Codec(model, windows=windows)
        codes = torch.load(args.codes, weights_only=True)
        result["peak_rss_after_load_gib"] = _peak_rss_gib()
        started = time.perf_counter()
        audio = codec.decode_checked([codes])[0]
        result["decode_seconds"] = time.perf_counter() - started
        result["peak_rss_gib"] = _peak_rss_gib()
        result["samples_decoded"] = int(audio.shape[-1])
    else:
        model = Xcodec2Model.from_pretrained(args.checkpoint)
        codec = Codec(model, windows=windows)
        wave = _recordings(args.audio_dir, args.repeats)
        with torch.inference_mode():
            codes = codec.encode_prepared([PreparedAudio(wave, "recordings", 16000)])[0]
            whole = model.tokenize(wave[None])
            whole_codes = whole.audio_codes[0, :, : int(whole.code_lengths[0])]
            # Decode the same (whole-file) codes both ways, so only the decoder's windowing differs.
            whole_audio = model.detokenize(whole_codes[None]).audio[0]
            windowed_audio = codec.decode_checked([whole_codes])[0]
        same = (
            (whole_codes == codes).all(0)
            if whole_codes.shape == codes.shape
            else torch.zeros(1, dtype=torch.bool)
        )
        plan = plan_windows(math.ceil(wave.shape[-1] / 320), codec.window_frames, codec.context_frames)
        joins = [w.keep_stop for w in plan if w.keep_stop is not None]
        near = torch.zeros(same.shape[-1], dtype=torch.bool)
        for b in joins:
            near[max(0, b - 50) : b + 50] = True
        error = whole_audio - windowed_audio

        def snr(ref: torch.Tensor, err: torch.Tensor) -> float:
            return float(10 * torch.log10(ref.double().pow(2).sum() / err.double().pow(2).sum()))

        result.update(
            {
                "audio_seconds": wave.shape[-1] / 16000,
                "distinct_codes": int(codes.unique().numel()),
                "token_agreement": float(same.float().mean()),
                "join_token_agreement": float(same[near].float().mean()) if joins else 1.0,
                "decode_snr_db": snr(whole_audio, error),
                "join_snr_db": [
                    snr(
                        whole_audio[b * 320 - 16000 : b * 320 + 16000],
                        error[b * 320 - 16000 : b * 320 + 16000],
                    )
                    for b in joins
                ],
            }
        )
    args.report.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    _probe(sys.argv[1:])
