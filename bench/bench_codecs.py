"""Speed, memory and exactness of our X-Codec / X-Codec2 against the Transformers reference.

One command::

    python bench/bench_codecs.py [--quick] [--codec xcodec2|xcodec|all] [--runs N]
                                 [--dtype bfloat16] [--output bench/RESULTS.md]
    python bench/bench_codecs.py --profile      # where our encode spends its time
    python bench/bench_codecs.py --long         # long audio: time and peak RSS vs length
    python bench/bench_codecs.py --tiny --runs 1  # small configs: checks the harness itself

Both implementations load the SAME random full-size weights (the reference built from
its default config with a fixed seed, ``save_pretrained`` once into ``--cache-dir``) and
get the same input tensors (real recordings from ../shared/audio, or synthesised
speech-like audio where absent; X-Codec2 features computed once with
:class:`xcodec.features.Xcodec2FeatureExtractor`, since the reference's extractor needs
torchaudio). Every (implementation, codec, op, size, allocator) is measured in a
subprocess of its own (``_bench_worker.py``): its peak RSS is its own, and glibc reads the
allocator variables at process start. The reference runs under glibc's default allocator
and under ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`` ("tuned"); ours
under both too. The report replaces only its own section of ``--output``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKER = BENCH_DIR / "_bench_worker.py"
SHARED_AUDIO = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared")) / "audio"
RECORDINGS = ("speech_en.flac", "speech_cn.wav", "music.wav")
SAMPLE_RATE = 16000

SECTION_START = "<!-- bench_codecs:start -->"
SECTION_END = "<!-- bench_codecs:end -->"

# glibc's mmap threshold makes every large temporary a fresh mmap + page faults; these
# two variables keep freed memory in the heap instead (issue 6: 3x on the reference).
TUNED_ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


@dataclasses.dataclass(frozen=True)
class Size:
    """One input shape: ``name`` as printed, ``seconds`` per batch item."""

    name: str
    seconds: tuple[float, ...]

    @property
    def batch(self) -> int:
        return len(self.seconds)


@dataclasses.dataclass(frozen=True)
class Variant:
    """Who runs and how: implementation, allocator setting, dtype."""

    impl: str  # "reference" | "ours"
    allocator: str  # "default" | "tuned"
    dtype: str = "float32"

    @property
    def label(self) -> str:
        suffix = "" if self.dtype == "float32" else f"-{self.dtype}"
        return f"{self.impl}-{self.allocator}{suffix}"


REF_DEFAULT = Variant("reference", "default")
REF_TUNED = Variant("reference", "tuned")
OURS = Variant("ours", "default")
OURS_TUNED = Variant("ours", "tuned")

SIZES_FULL = {
    "5s": Size("5 s", (5.0,)),
    "20s": Size("20 s", (20.0,)),
    "4x": Size("4 x 3-8 s", (3.0, 4.5, 6.5, 8.0)),
}
SIZES_TINY = {
    "5s": Size("1 s", (1.0,)),
    "20s": Size("2 s", (2.0,)),
    "4x": Size("4 x 1-2 s", (1.0, 1.3, 1.6, 2.0)),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- audio
def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic voiced 'syllables': a gliding harmonic source, amplitude-gated, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 5.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 3.3 * t), 0, None) ** 2
    audio = 0.15 * voiced * syllables + 0.01 * rng.standard_normal(t.size)
    return audio.astype(np.float32)


def audio_pool() -> tuple[np.ndarray, str]:
    """All recordings end to end (16 kHz mono float32), and a word on where they came from."""
    try:
        import soundfile
    except ImportError:
        soundfile = None
    pieces = []
    if soundfile is not None:
        for name in RECORDINGS:
            path = SHARED_AUDIO / name
            if not path.exists():
                continue
            audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            if rate == SAMPLE_RATE:
                pieces.append(audio.mean(axis=1))
    if pieces:
        return np.concatenate(pieces), f"real recordings ({', '.join(RECORDINGS)}) from {SHARED_AUDIO}"
    return _speech_like(40.0), "synthesised speech-like audio (../shared/audio not found)"


def clip(pool: np.ndarray, seconds: float, offset_seconds: float) -> np.ndarray:
    """``seconds`` of the pool from ``offset_seconds``, wrapping around."""
    length = round(seconds * SAMPLE_RATE)
    start = round(offset_seconds * SAMPLE_RATE) % pool.size
    reps = math.ceil((start + length) / pool.size)
    return np.tile(pool, reps)[start : start + length].copy()


def make_encode_inputs(codec: str, size: Size, pool: np.ndarray) -> dict[str, torch.Tensor]:
    """The tensors both implementations encode, built once."""
    # Items start at different places so a batch does not hold one clip four times.
    items = [clip(pool, seconds, 7.3 * index) for index, seconds in enumerate(size.seconds)]
    if codec == "xcodec2":
        from xcodec.features import Xcodec2FeatureExtractor

        features = Xcodec2FeatureExtractor()(items, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return {
            key: torch.as_tensor(features[key]).contiguous()
            for key in ("input_values", "padding_mask", "input_features", "input_features_mask")
        }
    longest = max(item.size for item in items)
    input_values = torch.zeros(len(items), 1, longest)
    for row, item in enumerate(items):
        input_values[row, 0, : item.size] = torch.from_numpy(item)
    return {"input_values": input_values}


# ---------------------------------------------------------------------------- workers
@dataclasses.dataclass
class Runner:
    """Starts workers: one task, one process, one environment."""

    work_dir: Path
    threads: int
    timeout_s: float
    counter: int = 0

    def env(self, allocator: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in TUNED_ALLOCATOR}
        if allocator == "tuned":
            env.update(TUNED_ALLOCATOR)
        env["OMP_NUM_THREADS"] = str(self.threads)
        env["MKL_NUM_THREADS"] = str(self.threads)
        return env

    def run(
        self, label: str, task: dict[str, Any], allocator: str = "default", rss_cap_mb: float | None = None
    ) -> dict[str, Any]:
        """Run one task; returns the worker's result (``ok`` False with ``error`` on failure)."""
        self.counter += 1
        out_dir = self.work_dir / f"{self.counter:03d}-{label}"
        out_dir.mkdir(parents=True, exist_ok=True)
        task = {**task, "out_dir": str(out_dir), "threads": self.threads}
        task_path = out_dir / "task.json"
        task_path.write_text(json.dumps(task, indent=1))
        log(f"{label} ({allocator} allocator) ...")
        start = time.perf_counter()
        error = self._spawn(task_path, out_dir, allocator, rss_cap_mb)
        elapsed = time.perf_counter() - start
        result_path = out_dir / "result.json"
        if result_path.exists():
            result: dict[str, Any] = json.loads(result_path.read_text())
        else:
            result = {"ok": False, "error": error or "worker wrote no result"}
        result["out_dir"] = str(out_dir)
        result["process_s"] = elapsed
        if result.get("ok"):
            log(f"{label}: done in {elapsed:.1f} s")
        else:
            log(f"{label}: FAILED: {result.get('error')}")
        return result

    def _spawn(self, task_path: Path, out_dir: Path, allocator: str, rss_cap_mb: float | None) -> str | None:
        with open(out_dir / "stderr.txt", "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), str(task_path)],
                env=self.env(allocator),
                stdout=stderr,
                stderr=stderr,
                cwd=REPO,
            )
            deadline = time.monotonic() + self.timeout_s
            peak_mb = 0.0
            while process.poll() is None:
                if rss_cap_mb is not None:
                    peak_mb = max(peak_mb, _rss_mb(process.pid))
                    if peak_mb > rss_cap_mb:
                        process.send_signal(signal.SIGKILL)
                        process.wait()
                        return f"stopped: RSS passed the {rss_cap_mb / 1024:.1f} GB cap"
                if time.monotonic() > deadline:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return f"stopped: ran past the {self.timeout_s:.0f} s limit"
                time.sleep(0.2)
        if process.returncode < 0:
            return f"killed by signal {-process.returncode} (out of memory?)"
        return None


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


# ---------------------------------------------------------------------------- suite
@dataclasses.dataclass
class Suite:
    args: argparse.Namespace
    runner: Runner
    cache_dir: Path
    pool: np.ndarray
    results: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def key(self, codec: str, op: str, size_key: str, variant: Variant) -> str:
        return f"{codec}|{op}|{size_key}|{variant.label}"

    def weights(self, codec: str) -> Path:
        """The shared random weights of one codec (see :meth:`build_weights`)."""
        return self.cache_dir / (f"tiny-{codec}" if self.args.tiny else codec)

    def build_weights(self, codecs: list[str]) -> None:
        """Build and save the reference weights of the codecs that have none cached yet."""
        missing = [c for c in codecs if not (self.weights(c) / "bench_complete.json").exists()]
        if not missing:
            return
        builds = [{"codec": c, "weights": str(self.weights(c))} for c in missing]
        task = {"kind": "build", "builds": builds, "tiny": self.args.tiny, "seed": 0}
        result = self.runner.run(f"build-{'-'.join(missing)}", task, allocator="tuned")
        if not result.get("ok"):
            raise SystemExit(f"could not build the reference weights of {missing}: {result.get('error')}")
        for codec in missing:
            marker = {
                "parameters": result["parameters"][codec],
                "calibration": result["calibration"][codec],
                "seed": 0,
            }
            (self.weights(codec) / "bench_complete.json").write_text(json.dumps(marker))

    def inputs_file(self, codec: str, op: str, size_key: str, tensors: dict[str, torch.Tensor]) -> Path:
        path = self.runner.work_dir / f"inputs-{codec}-{op}-{size_key}.pt"
        torch.save(tensors, path)
        return path

    def measure(
        self, codec: str, op: str, size_key: str, variant: Variant, weights: Path, inputs: Path
    ) -> None:
        task = {
            "kind": "measure",
            "impl": variant.impl,
            "codec": codec,
            "op": op,
            "dtype": variant.dtype,
            "weights": str(weights),
            "inputs": str(inputs),
            "warmup": self.args.warmup,
            "runs": self.args.runs,
            # The reference's FLOPs are counted once per op and size, in the tuned-allocator
            # worker after its timed runs (its peak RSS is read before the count).
            "count_flops": variant == REF_TUNED,
        }
        label = f"{codec}-{op}-{size_key}-{variant.label}"
        self.results[self.key(codec, op, size_key, variant)] = self.runner.run(label, task, variant.allocator)

    def flops(self, codec: str, op: str, size_key: str) -> int | None:
        result = self.results.get(self.key(codec, op, size_key, REF_TUNED), {})
        return result.get("flops") if result.get("ok") else None

    def output(self, codec: str, op: str, size_key: str, variant: Variant) -> np.ndarray | None:
        result = self.results.get(self.key(codec, op, size_key, variant), {})
        if not result.get("ok"):
            return None
        return np.load(Path(result["out_dir"]) / result["output"])

    def variants(self) -> list[Variant]:
        chosen = [REF_DEFAULT, REF_TUNED, OURS]
        if not (self.args.quick or self.args.tiny):
            chosen.append(OURS_TUNED)
        if self.args.dtype != "float32":
            chosen.append(Variant("ours", "default", self.args.dtype))
        return chosen

    def run_codec(self, codec: str, sizes: dict[str, Size]) -> dict[str, Any]:
        weights = self.weights(codec)
        info: dict[str, Any] = {"flops": {}, "shapes": {}}
        for size_key, size in sizes.items():
            encode_inputs = make_encode_inputs(codec, size, self.pool)
            info["shapes"][size_key] = tuple(encode_inputs["input_values"].shape)
            encode_path = self.inputs_file(codec, "encode", size_key, encode_inputs)
            for variant in self.variants():
                self.measure(codec, "encode", size_key, variant, weights, encode_path)
            info["flops"][("encode", size_key)] = self.flops(codec, "encode", size_key)
            # Decode what the reference encoded (random codes if no encode succeeded).
            codes = next(
                (
                    c
                    for v in (REF_DEFAULT, REF_TUNED, OURS)
                    if (c := self.output(codec, "encode", size_key, v)) is not None
                ),
                None,
            )
            if codes is None:
                codes = _random_codes(codec, size, weights)
            decode_path = self.inputs_file(
                codec, "decode", size_key, {"audio_codes": torch.from_numpy(codes).long()}
            )
            for variant in self.variants():
                self.measure(codec, "decode", size_key, variant, weights, decode_path)
            info["flops"][("decode", size_key)] = self.flops(codec, "decode", size_key)
        return info


def _random_codes(codec: str, size: Size, weights: Path) -> np.ndarray:
    config = json.loads((weights / "config.json").read_text())
    frames = math.ceil(max(size.seconds) * SAMPLE_RATE / 320) + 1
    rng = np.random.default_rng(0)
    if codec == "xcodec2":
        levels = config.get("quantization_levels", [4] * 8)
        return rng.integers(0, int(np.prod(levels)), (size.batch, 1, frames))
    return rng.integers(0, int(config.get("codebook_size", 1024)), (size.batch, 8, frames))


def matmul_rate(runner: Runner, dtype: str, label: str, size: int = 2048) -> float | None:
    task = {"kind": "matmul", "dtype": dtype, "size": size, "runs": 10}
    result = runner.run(f"matmul-{dtype}-{label}", task)
    return float(result["gflops"]) if result.get("ok") else None


# ---------------------------------------------------------------------------- report
def machine_lines(threads: int) -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        ).split()
        isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    except (OSError, StopIteration):
        isa = "?"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return [
        f"- Machine: {cpu} ({isa}); {os.cpu_count()} cores; {mem_gb:.0f} GB RAM; Python {platform.python_version()}",
        f"- torch {torch.__version__} ({threads} threads), transformers {tf_version}, repo at {commit}",
        f"- {_load_average('Load average at start')} (timings are only comparable on a quiet machine)",
    ]


def _load_average(what: str) -> str:
    try:
        return f"{what}: {' / '.join(Path('/proc/loadavg').read_text().split()[:3])} (1 / 5 / 15 min)"
    except OSError:
        return f"{what}: unknown"


def _gb(mb: float | None) -> str:
    return "-" if mb is None else f"{mb / 1024:.2f}"


def _peak_mb(result: dict[str, Any]) -> float | None:
    if not result.get("ok"):
        return None
    peak = result.get("op_peak_rss_mb")
    return peak if peak is not None else result.get("ru_maxrss_mb")


def _time_cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "not run"
    if not result.get("ok"):
        return f"failed ({_short(result.get('error', '?'))})"
    times = result["times_s"]
    return f"{result['median_s']:.3f} ({min(times):.3f}-{max(times):.3f})"


def _short(text: str, width: int = 60) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= width else text[: width - 3] + "..."


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not (numerator and denominator and numerator.get("ok") and denominator.get("ok")):
        return None
    return float(numerator["median_s"]) / float(denominator["median_s"])


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def compare_codes(ours: np.ndarray | None, reference: np.ndarray | None) -> str:
    if ours is None or reference is None:
        return "-"
    if ours.shape != reference.shape:
        return f"no (shape {ours.shape} vs {reference.shape})"
    differ = int((ours != reference).sum())
    return "yes" if differ == 0 else f"no ({differ} of {ours.size} differ)"


def snr_db(signal_ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(((test.astype(np.float64) - signal_ref) ** 2).sum())
    power = float((signal_ref.astype(np.float64) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(power / noise) if power > 0 else -math.inf


def codec_tables(
    suite: Suite, codec: str, sizes: dict[str, Size], info: dict[str, Any], matmul: float | None
) -> list[str]:
    title = {"xcodec2": "X-Codec2", "xcodec": "X-Codec"}[codec]
    res = suite.results
    lines = [
        f"### {title}: wall time, seconds (median, min-max of {suite.args.runs} runs after {suite.args.warmup} warm-up)",
        "",
        "| op | size | reference, default alloc | reference, tuned alloc | ours | ours, tuned alloc "
        "| speed-up vs ref default | speed-up vs ref tuned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in ("encode", "decode"):
        for size_key, size in sizes.items():
            row = {
                v: res.get(suite.key(codec, op, size_key, v))
                for v in (REF_DEFAULT, REF_TUNED, OURS, OURS_TUNED)
            }
            lines.append(
                f"| {op} | {size.name} | {_time_cell(row[REF_DEFAULT])} | {_time_cell(row[REF_TUNED])} "
                f"| {_time_cell(row[OURS])} | {_time_cell(row[OURS_TUNED])} "
                f"| {_x(_ratio(row[REF_DEFAULT], row[OURS]))} | {_x(_ratio(row[REF_TUNED], row[OURS]))} |"
            )
    lines += [
        "",
        f"### {title}: memory, efficiency, exactness",
        "",
        "| op | size | peak RSS ref default (GB) | peak RSS ref tuned (GB) | peak RSS ours (GB) "
        "| ours / lower ref RSS | GFLOP (reference count) | ours GFLOP/s | % of matmul | codes equal "
        "| max abs audio diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for op in ("encode", "decode"):
        for size_key, size in sizes.items():
            ref_d = res.get(suite.key(codec, op, size_key, REF_DEFAULT), {})
            ref_t = res.get(suite.key(codec, op, size_key, REF_TUNED), {})
            ours = res.get(suite.key(codec, op, size_key, OURS), {})
            ref_peaks = [p for p in (_peak_mb(ref_d), _peak_mb(ref_t)) if p is not None]
            ours_peak = _peak_mb(ours)
            rss_ratio = _x(ours_peak / min(ref_peaks)) if ours_peak and ref_peaks else "-"
            flops = info["flops"].get((op, size_key))
            gflops = flops / 1e9 if flops else None
            rate = gflops / ours["median_s"] if gflops and ours.get("ok") else None
            fraction = f"{100 * rate / matmul:.0f}%" if rate and matmul else "-"
            ours_out = suite.output(codec, op, size_key, OURS)
            ref_out = suite.output(codec, op, size_key, REF_DEFAULT)
            if ref_out is None:
                ref_out = suite.output(codec, op, size_key, REF_TUNED)
            if op == "encode":
                codes, audio = compare_codes(ours_out, ref_out), "-"
            else:
                codes = "-"
                ok = ours_out is not None and ref_out is not None and ours_out.shape == ref_out.shape
                audio = f"{np.abs(ours_out - ref_out).max():.2e}" if ok else "-"  # type: ignore[operator]
            lines.append(
                f"| {op} | {size.name} | {_gb(_peak_mb(ref_d))} | {_gb(_peak_mb(ref_t))} | {_gb(ours_peak)} "
                f"| {rss_ratio} | {'-' if gflops is None else f'{gflops:.3g}'} "
                f"| {'-' if rate is None else f'{rate:.3g}'} | {fraction} | {codes} | {audio} |"
            )
    lines.append("")
    return lines


def bf16_table(
    suite: Suite, codec: str, sizes: dict[str, Size], dtype: str, matmul_low: float | None
) -> list[str]:
    low = Variant("ours", "default", dtype)
    title = {"xcodec2": "X-Codec2", "xcodec": "X-Codec"}[codec]
    lines = [
        f"### {title}: ours in {dtype} against ours in float32 (opt-in reduced precision)",
        "",
        f"| op | size | ours float32 (s) | ours {dtype} (s) | speed-up | token agreement with float32 "
        "| decode SNR vs float32 (dB) | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in ("encode", "decode"):
        for size_key, size in sizes.items():
            fp32 = suite.results.get(suite.key(codec, op, size_key, OURS), {})
            reduced = suite.results.get(suite.key(codec, op, size_key, low), {})
            fp32_out = suite.output(codec, op, size_key, OURS)
            low_out = suite.output(codec, op, size_key, low)
            agreement = snr = "-"
            if fp32_out is not None and low_out is not None and fp32_out.shape == low_out.shape:
                if op == "encode":
                    agreement = f"{100 * float((fp32_out == low_out).mean()):.2f}%"
                else:
                    snr = f"{snr_db(fp32_out, low_out):.1f}"
            lines.append(
                f"| {op} | {size.name} | {_time_cell(fp32)} | {_time_cell(reduced)} | {_x(_ratio(fp32, reduced))} "
                f"| {agreement} | {snr} | {_gb(_peak_mb(reduced))} |"
            )
    if matmul_low:
        lines += ["", f"Dense {dtype} matmul in this run: {matmul_low:.0f} GFLOP/s."]
    lines.append("")
    return lines


def targets_table(
    suite: Suite, sizes: dict[str, Size], infos: dict[str, Any], matmul: float | None
) -> list[str]:
    """Issue 6's CPU targets, each against the figures above (only those this run measured)."""
    res = suite.results
    rows: list[tuple[str, float | None, float, str]] = []

    def speedup(codec: str, op: str, size_key: str, ref: Variant) -> float | None:
        return _ratio(
            res.get(suite.key(codec, op, size_key, ref)), res.get(suite.key(codec, op, size_key, OURS))
        )

    if "xcodec2" in infos:
        for size_key in ("20s", "4x"):
            if size_key in sizes:
                rows.append(
                    (
                        f"X-Codec2 encode {sizes[size_key].name}, vs ref default",
                        speedup("xcodec2", "encode", size_key, REF_DEFAULT),
                        2.5,
                        "x",
                    )
                )
        for size_key, size in sizes.items():
            rows.append(
                (
                    f"X-Codec2 encode {size.name}, vs ref tuned",
                    speedup("xcodec2", "encode", size_key, REF_TUNED),
                    1.0,
                    "x",
                )
            )
        for size_key, size in sizes.items():
            for ref in (REF_DEFAULT, REF_TUNED):
                rows.append(
                    (
                        f"X-Codec2 decode {size.name}, vs ref {ref.allocator}",
                        speedup("xcodec2", "decode", size_key, ref),
                        1.2,
                        "x",
                    )
                )
        if "20s" in sizes:
            ours_peak = _peak_mb(res.get(suite.key("xcodec2", "encode", "20s", OURS), {}))
            refs = [
                p
                for v in (REF_DEFAULT, REF_TUNED)
                if (p := _peak_mb(res.get(suite.key("xcodec2", "encode", "20s", v), {})))
            ]
            # Lower-is-better target: compare the inverse so every row reads "measured >= target".
            inverse = (min(refs) / ours_peak) if ours_peak and refs else None
            rows.append(("X-Codec2 encode 20 s: lower ref peak RSS / ours (>= 1/0.6)", inverse, 1 / 0.6, "x"))
        for size_key, size in sizes.items():
            flops = infos["xcodec2"]["flops"].get(("encode", size_key))
            ours = res.get(suite.key("xcodec2", "encode", size_key, OURS), {})
            fraction = (
                flops / 1e9 / ours["median_s"] / matmul if flops and ours.get("ok") and matmul else None
            )
            rows.append((f"X-Codec2 encode {size.name}: fraction of matmul GFLOP/s", fraction, 0.85, "%"))
    if "xcodec" in infos and "20s" in sizes:
        for op in ("encode", "decode"):
            rows.append(
                (f"X-Codec {op} 20 s, vs ref tuned", speedup("xcodec", op, "20s", REF_TUNED), 1.2, "x")
            )
            rows.append(
                (f"X-Codec {op} 20 s, vs ref default", speedup("xcodec", op, "20s", REF_DEFAULT), 2.0, "x")
            )
    lines = [
        "### Issue 6 CPU targets (this run)",
        "",
        "| target | measured | needed | met |",
        "|---|---|---|---|",
    ]
    for name, value, needed, unit in rows:
        fmt = (lambda v: f"{100 * v:.0f}%") if unit == "%" else (lambda v: f"{v:.2f}x")
        met = "-" if value is None else ("yes" if value >= needed else "NO")
        lines.append(f"| {name} | {'-' if value is None else fmt(value)} | {fmt(needed)} | {met} |")
    lines.append("")
    return lines


def replace_section(path: Path, key: str, body: list[str]) -> None:
    """Put ``body`` in ``path`` between this mode's markers, inside the bench_codecs section.

    Only the ``key`` sub-section changes: other modes' sub-sections and everything outside
    the bench_codecs markers (other benchmarks' sections) stay as they were.
    """
    start, end = f"<!-- bench_codecs:{key}:start -->", f"<!-- bench_codecs:{key}:end -->"
    block = "\n".join([start, *body, end])
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        inner, tail = rest.split(SECTION_END, 1)
    else:
        head, inner, tail = (
            text.rstrip("\n") + "\n\n",
            "\n## Codec speed and memory (bench/bench_codecs.py)\n",
            "\n",
        )
    if start in inner and end in inner:
        before, after = inner.split(start, 1)
        inner = before + block + after.split(end, 1)[1]
    else:
        inner = inner.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + SECTION_START + inner + SECTION_END + tail)


def report_header(args: argparse.Namespace, title: str) -> list[str]:
    command = "python bench/bench_codecs.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [f"### {title}", ""]
    if args.tiny:
        lines += [
            "**SMOKE TEST ONLY: tiny random configs and 1-2 s clips; these numbers measure nothing.**",
            "",
        ]
    lines += [
        f"- Command: `{command.strip()}`",
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        *machine_lines(args.threads),
    ]
    return lines


# ---------------------------------------------------------------------------- modes
def run_main(args: argparse.Namespace, runner: Runner, cache_dir: Path) -> list[str]:
    pool, source = audio_pool()
    suite = Suite(args, runner, cache_dir, pool)
    table = SIZES_TINY if args.tiny else SIZES_FULL
    sizes = {k: table[k] for k in args.sizes}
    codecs = ["xcodec2", "xcodec"] if args.codec == "all" else [args.codec]
    matmul_size = 512 if args.tiny else 2048
    matmul_before = matmul_rate(runner, "float32", "before", matmul_size)
    low_before = matmul_rate(runner, args.dtype, "before", matmul_size) if args.dtype != "float32" else None
    suite.build_weights(codecs)
    infos = {codec: suite.run_codec(codec, sizes) for codec in codecs}
    # A second matmul reading shows drift in machine load over the run (skipped for --tiny).
    matmul_after = None if args.tiny else matmul_rate(runner, "float32", "after", matmul_size)
    matmuls = [m for m in (matmul_before, matmul_after) if m]
    matmul = statistics.median(matmuls) if matmuls else None
    lines = report_header(args, "Encode / decode: ours against the Transformers reference")
    lines += [
        f"- Precision fp32, eval, inference_mode; {args.runs} timed runs after {args.warmup} warm-up, "
        "each (implementation, codec, op, size, allocator) in a fresh process",
        "- Weights: random full-size (Transformers default configs, seed 0), the same file for both"
        if not args.tiny
        else "- Weights: random tiny configs (seed 0), the same file for both",
        f"- Inputs: {source}; X-Codec2 features from xcodec.features.Xcodec2FeatureExtractor, fed to both",
        f"- Allocators: default = glibc defaults; tuned = {' '.join(f'{k}={v}' for k, v in TUNED_ALLOCATOR.items())}",
        f"- Dense fp32 matmul ({matmul_size}^3) in this run: "
        + " / ".join("-" if m is None else f"{m:.0f}" for m in (matmul_before, matmul_after))
        + " GFLOP/s (before / after); the % column uses their median",
        "- Speed-up = reference median / ours median (> 1: ours is faster). Peak RSS: the worker's "
        "high-water mark over the timed calls (VmHWM reset after loading; the weights are resident), "
        "ru_maxrss of the whole process is in the raw JSON",
        "- GFLOP: counted once on the reference with torch.utils.flop_counter (matmul/conv/attention "
        "FLOPs); ours GFLOP/s = that count / ours median",
        "",
    ]
    for codec in codecs:
        lines += codec_tables(suite, codec, sizes, infos[codec], matmul)
    if args.dtype != "float32":
        for codec in codecs:
            lines += bf16_table(suite, codec, sizes, args.dtype, low_before)
    lines += targets_table(suite, sizes, infos, matmul)
    failures = [(k, r) for k, r in suite.results.items() if not r.get("ok")]
    if failures:
        lines += ["Failures (full tracebacks in each worker's result.json):", ""]
        lines += [f"- `{k}`: {_short(r.get('error', '?'), 200)} ({r['out_dir']})" for k, r in failures]
        lines.append("")
    raw = runner.work_dir / "results.json"
    raw.write_text(
        json.dumps(
            {k: {x: y for x, y in r.items() if x != "traceback"} for k, r in suite.results.items()}, indent=1
        )
    )
    lines.append(f"Raw per-worker results: `{raw}`. {_load_average('Load average at the end')}")
    return lines


def run_profile(args: argparse.Namespace, runner: Runner, cache_dir: Path) -> list[str]:
    pool, source = audio_pool()
    suite = Suite(args, runner, cache_dir, pool)
    codec = "xcodec2" if args.codec == "all" else args.codec
    size_key = "5s"
    size = (SIZES_TINY if args.tiny else SIZES_FULL)[size_key]
    suite.build_weights([codec])
    weights = suite.weights(codec)
    inputs = suite.inputs_file(codec, "encode", size_key, make_encode_inputs(codec, size, pool))
    task = {
        "kind": "profile",
        "codec": codec,
        "op": "encode",
        "weights": str(weights),
        "inputs": str(inputs),
        "top": args.top,
    }
    result = runner.run(f"profile-{codec}", task)
    lines = report_header(args, f"Where our {codec} encode of {size.name} spends its time (torch.profiler)")
    lines += [f"- Inputs: {source}", ""]
    if not result.get("ok"):
        lines.append(f"Profile failed: {result.get('error')}")
        return lines
    print(result["table"])
    stages = result.get("stages", {})
    whole = stages.pop("(whole call)", None)
    lines += [
        f"Time per top-level module in one un-profiled encode ({whole:.3f} s in all):"
        if whole
        else "Stages:",
        "",
        "| module | seconds | share |",
        "|---|---|---|",
        *[f"| `{n}` | {t:.3f} | {100 * t / whole:.1f}% |" for n, t in stages.items() if whole],
        "",
        f"Top ops by self CPU time in one profiled encode ({result['wall_s']:.3f} s wall, profiler overhead included):",
        "",
        "| op | self CPU (ms) | share of self CPU | calls |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{e['op']}` | {e['self_cpu_ms']:.1f} | {100 * e['share']:.1f}% | {e['calls']} |"
        for e in result["top"]
    ]
    return lines


def _windowing_note() -> str:
    try:
        from xcodec.api import Codec
    except ImportError as exc:
        return f"xcodec.api.Codec unavailable ({exc})"
    names = [
        f"{fn}({name})"
        for fn in ("__init__", "encode", "decode")
        for name in inspect.signature(getattr(Codec, fn)).parameters
        if any(word in name for word in ("window", "chunk", "segment", "overlap"))
    ]
    if names:
        return "windowing parameters found: " + ", ".join(names) + ", run with their defaults"
    return "no windowing in xcodec.api.Codec yet: each clip goes through the model in one call"


def run_long(args: argparse.Namespace, runner: Runner, cache_dir: Path) -> list[str]:
    pool, source = audio_pool()
    suite = Suite(args, runner, cache_dir, pool)
    codec = "xcodec2" if args.codec == "all" else args.codec
    suite.build_weights([codec])
    weights = suite.weights(codec)
    cap_mb = args.rss_cap_gb * 1024
    # Tiny: one clip inside one 30 s window, one across several (exercises the stitching).
    minutes = (
        [0.1, 0.75] if args.tiny and args.long_minutes is None else (args.long_minutes or [1, 5, 10, 30])
    )
    windowing = ""
    rows: list[str] = []
    stopped: dict[str, str] = {}
    history: dict[str, list[tuple[float, float, float]]] = {"encode": [], "decode": []}
    codes_by_length: dict[float, np.ndarray] = {}
    for length in minutes:
        seconds = 60 * length
        for op in ("encode", "decode"):
            if op in stopped:
                rows.append(f"| {length:g} | {op} | - | - | - | skipped: {stopped[op]} |")
                continue
            predicted = _predict_peak(history[op], seconds)
            if predicted is not None and predicted > cap_mb:
                stopped[op] = f"predicted peak {predicted / 1024:.1f} GB > {args.rss_cap_gb:g} GB cap"
                rows.append(f"| {length:g} | {op} | - | - | - | skipped: {stopped[op]} |")
                continue
            if op == "encode":
                tensors = {"waveform": torch.from_numpy(clip(pool, seconds, 0.0))}
            else:
                codes = codes_by_length.get(length)
                if codes is None:
                    frames = round(seconds * SAMPLE_RATE / 320)
                    codes = np.random.default_rng(0).integers(0, 65536, (1, frames))
                tensors = {"audio_codes": torch.from_numpy(codes).long()}
            inputs = suite.inputs_file(codec, f"long-{op}", f"{length:g}min", tensors)
            task = {
                "kind": "long",
                "codec": codec,
                "op": op,
                "weights": str(weights),
                "inputs": str(inputs),
                # As `xcodec encode` / `xcodec decode` load it: only the direction that runs.
                "parts": "encoder" if op == "encode" else "decoder",
            }
            result = runner.run(f"long-{codec}-{op}-{length:g}min", task, rss_cap_mb=cap_mb)
            if not result.get("ok"):
                stopped[op] = _short(str(result.get("error")), 80)
                rows.append(f"| {length:g} | {op} | - | - | - | {stopped[op]} |")
                continue
            peak = _peak_mb(result) or 0.0
            windowing = result.get("windowing") or windowing
            history[op].append((seconds, peak, float(result.get("rss_loaded_mb") or 0.0)))
            if op == "encode":
                codes_by_length[length] = np.load(Path(result["out_dir"]) / "codes.npy")
            rows.append(
                f"| {length:g} | {op} | {result['wall_s']:.1f} | {seconds / result['wall_s']:.1f}x "
                f"| {_gb(peak)} | |"
            )
    lines = report_header(
        args, f"Long audio: our {codec} through xcodec.api.Codec, time and peak RSS vs length"
    )
    lines += [
        f"- Inputs: {source}, tiled to length",
        f"- {_windowing_note()}" + (f": `{windowing}`" if windowing and windowing != "None" else ""),
        f"- One timed call per length after a 1 s warm-up; a worker is stopped when its RSS passes "
        f"{args.rss_cap_gb:g} GB, and a length is skipped when the shorter ones predict it would",
        "",
        "| minutes | op | wall (s) | real-time factor | peak RSS (GB) | note |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    return lines


def _predict_peak(history: list[tuple[float, float, float]], seconds: float) -> float | None:
    """Extrapolate peak RSS to ``seconds`` from the last two (seconds, peak, loaded) points.

    The resident weights (``loaded``) stay; the working set on top grows as a power of the
    length, between linear (windowed, convolutions) and quadratic (full attention).
    """
    if len(history) < 2:
        return None
    (s1, p1, _), (s2, p2, loaded) = history[-2], history[-1]
    extra1, extra2 = max(p1 - loaded, 1.0), max(p2 - loaded, 1.0)
    exponent = min(2.0, max(1.0, math.log(extra2 / extra1) / math.log(s2 / s1))) if s2 > s1 else 2.0
    return loaded + extra2 * (seconds / s2) ** exponent


# ---------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 s only, 3 runs, no ours-tuned row (< 10 min on 2 cores)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny random configs, 1 s clips, as --quick: checks the harness, measures nothing",
    )
    parser.add_argument("--codec", choices=["xcodec2", "xcodec", "all"], default="all")
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per measurement (default 5, quick 3)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sizes", default=None, help="comma list of 5s,20s,4x (default all; quick: 5s)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="also time ours in this dtype",
    )
    parser.add_argument("--profile", action="store_true", help="only: torch.profiler over our encode at 5 s")
    parser.add_argument("--top", type=int, default=25, help="ops listed by --profile")
    parser.add_argument(
        "--long", action="store_true", help="only: long-audio time and peak RSS of our Codec API"
    )
    parser.add_argument("--long-minutes", type=lambda s: [float(x) for x in s.split(",")], default=None)
    parser.add_argument("--rss-cap-gb", type=float, default=12.0, help="--long stops a worker past this RSS")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one worker may run")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("XCODEC_BENCH_CACHE", "/tmp/xcodec-bench"))
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick or args.tiny else 5
    if args.sizes is None:
        args.sizes = "5s" if args.quick or args.tiny else "5s,20s,4x"
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in SIZES_FULL]
    if unknown:
        parser.error(f"unknown --sizes {unknown}; choose from {sorted(SIZES_FULL)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache_dir = args.cache_dir
    work_dir = cache_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    work_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(work_dir, args.threads, args.timeout)
    started = time.perf_counter()
    mode = "profile" if args.profile else "long" if args.long else "main"
    lines = {"profile": run_profile, "long": run_long, "main": run_main}[mode](args, runner, cache_dir)
    lines.append(f"\nSuite wall time: {time.perf_counter() - started:.0f} s.")
    key = f"tiny-{mode}" if args.tiny else mode
    replace_section(args.output, key, lines)
    print("\n".join(lines))
    log(f"report written to {args.output} (section bench_codecs:{key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
