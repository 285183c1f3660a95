"""One measurement of the codec benchmark, run in a process of its own.

``bench_codecs.py`` starts this script once per (implementation, codec, op, size,
allocator) so that each measurement's peak RSS is its own and the glibc allocator
variables (read once, at process start) take effect. The task comes in as a JSON file;
the result goes out as ``result.json`` (plus ``.npy`` outputs) in the task's ``out_dir``.

Task kinds:

- ``build``: build the Transformers references from their default (or tiny) configs with
  a fixed seed and ``save_pretrained`` them: the weights every other task loads.
- ``measure``: load one implementation, warm up, time ``runs`` calls of encode or decode;
  with ``count_flops``, then count one call's FLOPs (FlopCounterMode).
- ``matmul``: dense square matmul rate, the machine's practical peak for the dtype.
- ``profile``: torch.profiler over our encode, top ops by self CPU time.
- ``long``: our simple API (:class:`xcodec.api.Codec`) on one long clip.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

KIB = 1024
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in KiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter so the op's peak is not the loader's.

    Loading a checkpoint can briefly hold two copies of the weights; without the reset
    that transient would hide the op's own peak. Writing 5 to clear_refs resets VmHWM
    (Linux >= 4.0); ru_maxrss cannot be reset, so both figures are reported.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _memory_report(reset_ok: bool) -> dict[str, float | None]:
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    hwm = _status_kib("VmHWM") if reset_ok else None
    return {
        "ru_maxrss_mb": maxrss_kib / KIB,
        "op_peak_rss_mb": (hwm / KIB) if hwm is not None else None,
        "rss_now_mb": (_status_kib("VmRSS") or 0) / KIB,
    }


# ---------------------------------------------------------------------------- models
def _load_model(
    impl: str, codec: str, weights: str, dtype: torch.dtype, parts: str = "all"
) -> torch.nn.Module:
    """The reference loads everything (it has no choice); ours loads ``parts``."""
    if impl == "reference":
        import transformers

        cls = transformers.Xcodec2Model if codec == "xcodec2" else transformers.XcodecModel
        model = cls.from_pretrained(weights, dtype=dtype)
    elif codec == "xcodec2":
        from xcodec.models.xcodec2 import Xcodec2Model

        model = Xcodec2Model.from_pretrained(weights, dtype=dtype, parts=parts)
    else:
        from xcodec.models.xcodec import XcodecModel

        model = XcodecModel.from_pretrained(weights, dtype=dtype, parts=parts)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _op_call(
    model: Any, codec: str, op: str, inputs: dict[str, Any], dtype: torch.dtype
) -> Callable[[], Any]:
    """A zero-argument closure running one encode or decode on the prepared inputs."""
    if op == "encode":
        input_values = inputs["input_values"].to(dtype)
        if codec == "xcodec2":
            input_features = inputs["input_features"].to(dtype)
            padding_mask = inputs.get("padding_mask")
            features_mask = inputs.get("input_features_mask")
            return lambda: (
                model.encode(
                    input_values,
                    input_features,
                    padding_mask=padding_mask,
                    input_features_mask=features_mask,
                ).audio_codes
            )
        return lambda: model.encode(input_values).audio_codes
    audio_codes = inputs["audio_codes"].long()
    return lambda: model.decode(audio_codes=audio_codes).audio_values


# ---------------------------------------------------------------------------- tasks
def _tiny_config(codec: str, tiny: bool) -> dict[str, Any]:
    """For --tiny, the test suite's tiny config of ``codec`` (every stage runs, in seconds,
    on 1-2 s clips; the hop stays 320 and the semantic features 160-dim, so the real
    feature extractor works unchanged); else {} (the published defaults)."""
    if not tiny:
        return {}
    from _tiny import tiny_xcodec2_dict, tiny_xcodec_dict  # bench/_tiny.py: tests/_tiny.py's configs

    return tiny_xcodec2_dict() if codec == "xcodec2" else tiny_xcodec_dict("hubert")


def _build(task: dict[str, Any]) -> dict[str, Any]:
    """Build and save every codec in ``task["builds"]`` (one process: one transformers import)."""
    import transformers

    parameters, calibrations = {}, {}
    for build in task["builds"]:
        codec, folder = build["codec"], Path(build["weights"])
        tiny = task.get("tiny", False)
        torch.manual_seed(int(task.get("seed", 0)))
        model: torch.nn.Module
        if codec == "xcodec2":
            model = transformers.Xcodec2Model(transformers.Xcodec2Config(**_tiny_config(codec, tiny)))
        else:
            model = transformers.XcodecModel(transformers.XcodecConfig(**_tiny_config(codec, tiny)))
        model.eval()
        calibration = _calibrate_xcodec2(model) if codec == "xcodec2" else _calibrate_xcodec(model)
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        parameters[codec] = sum(p.numel() for p in model.parameters())
        calibrations[codec] = calibration
        del model
        gc.collect()
    return {"parameters": parameters, "calibration": calibrations}


# Random init leaves the quantizers degenerate: X-Codec's codebooks are all zeros (every
# code 0) and tiny X-Codec2 models squeeze the FSQ input to ~0 (every code the middle
# one). A codes-equal check on constant codes proves nothing, so the build spreads the
# quantizer inputs over the codebook: same architecture, same cost, varied codes.
_CALIBRATION_SECONDS = 2


def _calibrate_xcodec2(model: Any) -> str:
    """Scale the FSQ ``project_in`` so its outputs have unit spread on a noise clip."""
    frames = _CALIBRATION_SECONDS * 50
    generator = torch.Generator().manual_seed(1)
    input_values = 0.1 * torch.randn(1, 1, frames * 320, generator=generator)
    input_features = torch.randn(1, frames, 160, generator=generator)
    captured: list[torch.Tensor] = []
    project_in = model.quantizer.project_in
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        model.encode(input_values, input_features)
        handle.remove()
        scale = 1.0 / float(captured[0].std())
        project_in.weight.mul_(scale)
        project_in.bias.mul_(scale)
    return f"quantizer.project_in scaled by {scale:.3g}"


def _calibrate_xcodec(model: Any) -> str:
    """Fill the all-zero RVQ codebooks with Gaussian codewords at the embeddings' scale."""
    generator = torch.Generator().manual_seed(1)
    input_values = 0.1 * torch.randn(1, 1, _CALIBRATION_SECONDS * 16000, generator=generator)
    captured: list[torch.Tensor] = []
    encode = model.quantizer.encode

    def spy(embeddings: torch.Tensor, bandwidth: Any = None) -> torch.Tensor:
        captured.append(embeddings)
        return encode(embeddings, bandwidth)

    model.quantizer.encode = spy
    try:
        with torch.no_grad():
            model.encode(input_values)
    finally:
        del model.quantizer.encode  # back to the class's method
    std = float(captured[0].std())
    with torch.no_grad():
        for layer in model.quantizer.quantizers:
            codebook = layer.codebook
            codebook.embed.copy_(std * torch.randn(codebook.embed.shape, generator=generator))
            codebook.embed_avg.copy_(codebook.embed)
    return f"RVQ codebooks drawn from N(0, {std:.3g}^2)"


_PARTS_FOR_OP = {"encode": "encoder", "decode": "decoder"}


def _measure(task: dict[str, Any]) -> dict[str, Any]:
    impl, codec, op = task["impl"], task["codec"], task["op"]
    dtype = DTYPES[task.get("dtype", "float32")]
    out_dir = Path(task["out_dir"])
    t0 = time.perf_counter()
    # Ours loads only the direction it runs, as `xcodec encode` / `xcodec tokenize` do.
    parts = "all" if impl == "reference" else _PARTS_FOR_OP[op]
    model = _load_model(impl, codec, task["weights"], dtype, parts)
    load_s = time.perf_counter() - t0
    inputs = torch.load(task["inputs"], weights_only=True)
    call = _op_call(model, codec, op, inputs, dtype)
    gc.collect()
    rss_loaded_mb = (_status_kib("VmRSS") or 0) / KIB
    reset_ok = _reset_peak_rss()
    times: list[float] = []
    output: torch.Tensor | None = None
    with torch.inference_mode():
        for _ in range(int(task.get("warmup", 1))):
            output = call()
        for _ in range(int(task["runs"])):
            start = time.perf_counter()
            output = call()
            times.append(time.perf_counter() - start)
    assert output is not None
    # Memory first: the FLOP count below runs the op once more and must not touch it.
    memory = _memory_report(reset_ok)
    name = "codes.npy" if op == "encode" else "audio.npy"
    np.save(out_dir / name, output.float().numpy() if op == "decode" else output.numpy())
    flops = _count_flops(call) if task.get("count_flops") else None
    return {
        "times_s": times,
        "median_s": statistics.median(times),
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded_mb,
        "output": name,
        "flops": flops,
        **memory,
    }


def _count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of one call as torch.utils.flop_counter counts them (matmul, conv, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # no_grad, not inference_mode: FlopCounterMode's module tracker cannot see through
    # weight-norm parametrizations under inference_mode (AttributeError on `.weight`).
    with torch.no_grad(), counter:
        call()
    return int(counter.get_total_flops())


def _matmul(task: dict[str, Any]) -> dict[str, Any]:
    size = int(task.get("size", 2048))
    dtype = DTYPES[task.get("dtype", "float32")]
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(dtype)
    right = torch.randn(size, size, generator=generator).to(dtype)
    times = []
    with torch.inference_mode():
        for _ in range(2):
            torch.mm(left, right)
        for _ in range(int(task.get("runs", 10))):
            start = time.perf_counter()
            torch.mm(left, right)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"times_s": times, "median_s": median, "gflops": 2 * size**3 / median / 1e9, "size": size}


def _profile(task: dict[str, Any]) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    model = _load_model("ours", task["codec"], task["weights"], torch.float32)
    inputs = torch.load(task["inputs"], weights_only=True)
    call = _op_call(model, task["codec"], task.get("op", "encode"), inputs, torch.float32)
    with torch.inference_mode():
        call()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as profiler:
            start = time.perf_counter()
            call()
            wall = time.perf_counter() - start
    stages = _stage_times(model, call)
    averages = profiler.key_averages()
    rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in averages) or 1
    top = [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total_self,
            "calls": e.count,
        }
        for e in rows[: int(task.get("top", 25))]
    ]
    table = averages.table(sort_by="self_cpu_time_total", row_limit=int(task.get("top", 25)))
    return {"wall_s": wall, "top": top, "table": table, "stages": stages}


def _stage_times(model: torch.nn.Module, call: Callable[[], Any]) -> dict[str, float]:
    """Seconds spent in each top-level submodule during one un-profiled call (forward hooks)."""
    spent: dict[str, float] = {}
    started: dict[str, float] = {}
    handles = []
    for name, module in model.named_children():

        def before(_module: Any, _args: Any, name: str = name) -> None:
            started[name] = time.perf_counter()

        def after(_module: Any, _args: Any, _output: Any, name: str = name) -> None:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started.pop(name)

        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            call()
            spent["(whole call)"] = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return spent


def _long(task: dict[str, Any]) -> dict[str, Any]:
    """Our simple API on one long clip: encode (array in) or decode (codes in)."""
    from xcodec.api import Codec

    t0 = time.perf_counter()
    model = _load_model("ours", task["codec"], task["weights"], torch.float32, task.get("parts", "all"))
    codec = Codec(model, task["weights"], **task.get("codec_kwargs", {}))
    windowing = repr(getattr(codec, "windows", None))
    load_s = time.perf_counter() - t0
    inputs = torch.load(task["inputs"], weights_only=True)
    sample_rate = codec.sample_rate
    # Warm up on a short clip so one-time costs (allocations, lazy init) stay out of the figure.
    if task["op"] == "encode":
        codec.encode(np.zeros(sample_rate, dtype=np.float32), sampling_rate=sample_rate)
    else:
        codec.decode(inputs["audio_codes"][..., : int(codec.frame_rate)])
    gc.collect()
    rss_loaded_mb = (_status_kib("VmRSS") or 0) / KIB
    reset_ok = _reset_peak_rss()
    start = time.perf_counter()
    if task["op"] == "encode":
        codes = codec.encode(inputs["waveform"].numpy(), sampling_rate=sample_rate)
        np.save(Path(task["out_dir"]) / "codes.npy", codes.numpy())
        produced = int(codes.shape[-1])
    else:
        audio = codec.decode(inputs["audio_codes"])
        produced = int(audio.shape[-1])
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "load_s": load_s,
        "produced": produced,
        "windowing": windowing,
        "rss_loaded_mb": rss_loaded_mb,
        **_memory_report(reset_ok),
    }


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "build": _build,
    "measure": _measure,
    "matmul": _matmul,
    "profile": _profile,
    "long": _long,
}


def main(task_path: str) -> int:
    task = json.loads(Path(task_path).read_text())
    out_dir = Path(task["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = int(task.get("threads", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    try:
        result = {"ok": True, "threads": torch.get_num_threads(), **TASKS[task["kind"]](task)}
    except Exception as exc:
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            "traceback": traceback.format_exc(),
        }
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
