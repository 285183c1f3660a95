"""Synthesise the demo corpus: varied 16 kHz mono speech from the Debian speech synthesisers.

    python3 scripts/demo_corpus.py --out /work/demo_corpus --minutes 60 --eval-minutes 5

Each item ``i`` of a split draws everything (engine, voice, text, rate, pitch, augmentation)
from its own seeded generator, so the corpus is the same whatever order or how many runs
made it, and a rerun only makes the items that are missing (idempotent). Engines: espeak-ng
(many languages, voice variants), flite (kal, kal16, slt, rms) and festival (kal diphone, slt
HTS). Augmentation: gain, white noise at 20-45 dB SNR, a synthetic room (exponentially
decaying noise impulse response). The flite ``awb`` voice is never used for training: the
eval split and the test sentence in tests/data use it, so they are voices the model never heard.

Layout: OUT/train/NNNNNN.wav, OUT/eval/NNNNNN.wav, OUT/manifest.jsonl (one JSON per item:
path, split, engine, voice, text, rate, pitch, seconds, augmentation).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

SAMPLE_RATE = 16000
# espeak-ng languages (voice names as `espeak-ng --voices` lists them) and variants.
ESPEAK_LANGS = (
    "en", "en-us", "en-gb-scotland", "en-029", "de", "fr", "es", "it", "pt", "nl", "sv", "pl",
    "cs", "ru", "fi", "el", "tr", "hu", "ro", "da", "nb", "id", "vi", "cmn", "hi", "sw", "ja",
)  # fmt: skip
ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+klatt", "+whisper")
FLITE_TRAIN_VOICES = ("kal", "kal16", "slt", "rms")
FLITE_HELD_OUT = "awb"
FESTIVAL_VOICES = ("voice_kal_diphone", "voice_cmu_us_slt_arctic_hts")
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["sha", "chi", "tso", "ny", "an", "el"]


def _words() -> list[str]:
    path = Path("/usr/share/dict/words")
    if path.exists():
        words = [w.strip() for w in path.read_text(errors="ignore").split()]
        words = [w for w in words if w.isalpha() and w.islower() and 2 <= len(w) <= 10]
        if words:
            return words
    return ["the", "a", "house", "river", "green", "seven", "quickly", "light", "sound", "water", "music"]


WORDS = _words()


def _sentence(rng: random.Random, english: bool) -> str:
    n = rng.randint(4, 16)
    if english:
        words = [rng.choice(WORDS) for _ in range(n)]
    else:  # pseudo-words read with the language's own rules
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(n)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", "?", "!", ", and then."])


def _run(cmd: list[str], wav: Path) -> np.ndarray:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return audio


def _synthesise(rng: random.Random, split: str, tmp: Path) -> tuple[np.ndarray, dict[str, Any]]:
    wav = tmp / "out.wav"
    engine = rng.choices(["espeak-ng", "flite", "festival"], weights=[5, 3, 2])[0]
    if split == "eval" and rng.random() < 0.5:
        engine = "flite-heldout"
    rate = rng.uniform(0.75, 1.35)
    pitch = rng.uniform(0.8, 1.25)
    if engine == "espeak-ng":
        lang = rng.choice(ESPEAK_LANGS)
        voice = lang + rng.choice(ESPEAK_VARIANTS)
        text = _sentence(rng, lang.startswith("en"))
        cmd = [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(int(175 * rate)),
            "-p",
            str(int(50 * pitch)),
            "-w",
            str(wav),
            text,
        ]
    elif engine.startswith("flite"):
        voice = FLITE_HELD_OUT if engine == "flite-heldout" else rng.choice(FLITE_TRAIN_VOICES)
        text = _sentence(rng, True)
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={int(100 * pitch + (80 if voice == 'slt' else 0))}"]
        cmd += ["-t", text, "-o", str(wav)]
        engine = "flite"
    else:
        voice = rng.choice(FESTIVAL_VOICES)
        text = _sentence(rng, True)
        (tmp / "in.txt").write_text(text)
        stretch = f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})"
        cmd = ["text2wave", "-eval", f"({voice})", "-eval", stretch, str(tmp / "in.txt"), "-o", str(wav)]
    audio = _run(cmd, wav)
    meta = {"engine": engine, "voice": voice, "text": text, "rate": round(rate, 3), "pitch": round(pitch, 3)}
    return audio, meta


def _augment(audio: np.ndarray, rng: random.Random) -> tuple[np.ndarray, dict[str, Any]]:
    nprng = np.random.default_rng(rng.getrandbits(32))
    aug: dict[str, Any] = {}
    if rng.random() < 0.3:  # a small room: decaying noise impulse response, RT60 0.1-0.5 s
        rt60 = rng.uniform(0.1, 0.5)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = nprng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        ir[0] = 1.0 / rng.uniform(0.15, 0.6)  # direct path stronger than the tail
        wet = fftconvolve(audio, ir)[: audio.size]
        audio = (wet / (np.abs(wet).max() + 1e-9) * np.abs(audio).max()).astype(np.float32)
        aug["reverb_rt60"] = round(rt60, 3)
    if rng.random() < 0.5:
        snr = rng.uniform(20, 45)
        power = float(np.mean(audio**2)) + 1e-12
        audio = audio + nprng.standard_normal(audio.size).astype(np.float32) * np.sqrt(
            power / 10 ** (snr / 10)
        )
        aug["noise_snr_db"] = round(snr, 1)
    peak_db = rng.uniform(-18, -1)
    audio = audio / (np.abs(audio).max() + 1e-9) * 10 ** (peak_db / 20)
    aug["peak_db"] = round(peak_db, 1)
    return audio.astype(np.float32), aug


def make_item(out: str, split: str, index: int, seed: int) -> dict[str, Any] | None:
    """Make item ``index`` of ``split`` (skipped if its file exists); returns its manifest row."""
    path = Path(out) / split / f"{index:06d}.wav"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return dict(json.loads(meta_path.read_text()))
    rng = random.Random(f"{seed}:{split}:{index}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            audio, meta = _synthesise(rng, split, Path(tmp))
        except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
            print(f"item {split}/{index}: synthesis failed ({exc}); skipped", file=sys.stderr)
            return None
    if audio.size < SAMPLE_RATE // 2 or not np.isfinite(audio).all() or np.abs(audio).max() < 1e-4:
        return None
    audio, aug = _augment(audio, rng)
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
    row = {
        "path": f"{split}/{path.name}",
        "split": split,
        **meta,
        "seconds": round(audio.size / SAMPLE_RATE, 3),
    }
    row["augmentation"] = aug
    meta_path.write_text(json.dumps(row))
    return row


def build(out: Path, split: str, minutes: float, seed: int, jobs: int) -> list[dict[str, Any]]:
    (out / split).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    total = 0.0
    index = 0
    with ProcessPoolExecutor(jobs) as pool:
        while total < minutes * 60:
            batch = list(range(index, index + 16 * jobs))
            index += len(batch)
            for row in pool.map(
                make_item, [str(out)] * len(batch), [split] * len(batch), batch, [seed] * len(batch)
            ):
                if row is not None and total < minutes * 60:
                    rows.append(row)
                    total += row["seconds"]
            print(f"{split}: {total / 60:.1f} / {minutes} min", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/demo_corpus"))
    parser.add_argument("--minutes", type=float, default=180.0, help="training audio to make (minutes)")
    parser.add_argument("--eval-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    rows = build(args.out, "eval", args.eval_minutes, args.seed, args.jobs)
    rows += build(args.out, "train", args.minutes, args.seed, args.jobs)
    with open(args.out / "manifest.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    hours = sum(r["seconds"] for r in rows if r["split"] == "train") / 3600
    print(f"{len(rows)} items, {hours:.2f} h of training audio in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
