"""The ``xcodec`` command: encode, decode, reconstruct, convert.

Every file is processed even when some fail; failures are printed with the file name
and the problem, and the command then exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from xcodec.api import DEFAULT_MODEL, Codec, PreparedAudio
from xcodec.base import CodecModel
from xcodec.errors import XcodecError, isolate_items

__all__ = ["main"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _load_codec(args: argparse.Namespace, model: str | None = None, parts: str = "all") -> Codec:
    """The model behind the command; ``parts`` keeps only the direction it runs (less memory)."""
    from xcodec.api import load
    from xcodec.onnx.runtime import OnnxCodec, is_onnx_export

    if is_onnx_export(model or args.model):
        # An `xcodec export-onnx` folder runs on onnxruntime (same methods as Codec).
        return cast(Codec, OnnxCodec(model or args.model, tensors=True, max_batch_seconds=args.batch_seconds))
    return load(
        model or args.model,
        device=args.device,
        dtype=_DTYPES[args.dtype],
        max_batch_seconds=args.batch_seconds,
        local_files_only=args.offline or None,
        parts=parts,
    )


def _unique_outputs(inputs: Sequence[Path], out_dir: Path, suffix: str) -> list[Path]:
    """One output per input, named after it; clashing stems get a numeric suffix, never overwrite each other."""
    taken: set[str] = set()
    outputs = []
    for path in inputs:
        name, n = path.stem, 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}"
        taken.add(name)
        outputs.append(out_dir / f"{name}{suffix}")
    return outputs


def _prepare_all(codec: Codec, inputs: Sequence[Path]) -> tuple[list[PreparedAudio | None], list[str]]:
    from tqdm import tqdm

    prepared: list[PreparedAudio | None] = []
    failures: list[str] = []
    for index, path in enumerate(tqdm(inputs, desc="reading", unit="file", disable=len(inputs) < 2)):
        try:
            item = codec.prepare(path, index=index)
        except XcodecError as exc:
            prepared.append(None)
            failures.append(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
            continue
        if item.mixed_down:
            _say(f"note: {path} has several channels; mixed down to mono")
        prepared.append(item)
    return prepared, failures


def _encode_files(codec: Codec, inputs: Sequence[Path], bandwidth: float | None) -> tuple[list, list[str]]:
    """(item, codes) per input, None where it failed, and the failures; a bad file fails alone."""
    codec.model.check_bandwidth(bandwidth)  # job-level: one message and exit 2, not N failures
    prepared, failures = _prepare_all(codec, inputs)
    good = [p for p in prepared if p is not None]
    encoded, errors = isolate_items(
        good, lambda items: codec.encode_prepared(items, bandwidth=bandwidth), lambda _, item: item.source
    )
    failures += [str(error) for error in errors]
    codes_iter = iter(encoded)
    results: list[tuple[PreparedAudio, torch.Tensor] | None] = []
    for item in prepared:
        codes = None if item is None else next(codes_iter)
        results.append(None if item is None or codes is None else (item, codes))
    return results, failures


def cmd_encode(args: argparse.Namespace) -> int:
    codec = _load_codec(args, parts="encoder")
    inputs = [Path(p) for p in args.audio]
    args.output.mkdir(parents=True, exist_ok=True)
    results, failures = _encode_files(codec, inputs, args.bandwidth)
    for result, out_path in zip(results, _unique_outputs(inputs, args.output, ".npz"), strict=True):
        if result is None:
            continue
        item, codes = result
        np.savez(
            out_path,
            audio_codes=codes.numpy().astype(np.int32),
            sample_rate=np.int64(codec.sample_rate),
            # At the output rate, what `decode` cuts to (NeuCodec: 16 kHz in, 24 kHz out).
            num_samples=np.int64(_output_samples(codec, item.waveform.shape[-1])),
            original_sample_rate=np.int64(item.original_sample_rate),
            model=np.str_(codec.model_id),
            bandwidth=np.float64(args.bandwidth if args.bandwidth is not None else np.nan),
        )
        _say(f"{item.source} -> {out_path} ({codes.shape[0]} x {codes.shape[1]} codes)")
    return _finish(failures, len(inputs))


def _output_samples(codec: Codec, input_samples: int) -> int:
    """Samples at the output rate (``codec.sample_rate``) of ``input_samples`` at the input rate."""
    return input_samples * codec.sample_rate // codec.input_sample_rate


def _write_wav(path: Path, waveform: torch.Tensor, sample_rate: int) -> None:
    from xcodec.audio import save_audio

    path.parent.mkdir(parents=True, exist_ok=True)
    save_audio(path, waveform, sample_rate)


def cmd_decode(args: argparse.Namespace) -> int:
    if args.stream:
        from xcodec.streaming_cli import run_stream_decode

        return run_stream_decode(args, _load_codec)
    if args.output is None:
        raise XcodecError("decode needs -o/--output (or --stream to write audio to stdout)")
    inputs = [Path(p) for p in args.codes]
    loaded: list[tuple[Path, torch.Tensor, int | None, str | None]] = []
    failures: list[str] = []
    for path in inputs:
        try:
            with np.load(path, allow_pickle=False) as npz:
                codes = torch.from_numpy(np.asarray(npz["audio_codes"]).astype(np.int64))
                num_samples = int(npz["num_samples"]) if "num_samples" in npz else None
                model = str(npz["model"]) if "model" in npz else None
        except Exception as exc:
            failures.append(f"{path}: not a codes file written by `xcodec encode` ({exc})")
            continue
        loaded.append((path, codes, num_samples, model))
    if loaded:
        model_id = args.model or next((m for _, _, _, m in loaded if m), None) or DEFAULT_MODEL
        codec = _load_codec(args, model_id, parts="decoder")
        outputs = dict(
            zip(
                [p for p, *_ in loaded],
                _unique_outputs([p for p, *_ in loaded], args.output, ".wav"),
                strict=True,
            )
        )
        for path, codes, num_samples, _ in loaded:
            try:
                audio = codec.decode(codec.check_codes(codes, name=str(path)))
            except XcodecError as exc:
                failures.append(str(exc))
                continue
            assert isinstance(audio, torch.Tensor)
            if num_samples is not None:
                audio = audio[:num_samples]
            _write_wav(outputs[path], audio, codec.sample_rate)
            _say(f"{path} -> {outputs[path]}")
    return _finish(failures, len(inputs))


def cmd_reconstruct(args: argparse.Namespace) -> int:
    codec = _load_codec(args)
    path = Path(args.audio)
    results, failures = _encode_files(codec, [path], args.bandwidth)
    if results[0] is not None:
        item, codes = results[0]
        audio = codec.decode(codes)
        assert isinstance(audio, torch.Tensor)
        _write_wav(args.output, audio[: _output_samples(codec, item.waveform.shape[-1])], codec.sample_rate)
        _say(f"{path} -> {codes.shape[0]} x {codes.shape[1]} codes -> {args.output}")
    return _finish(failures, 1)


def cmd_convert(args: argparse.Namespace) -> int:
    from xcodec.auto import AutoModel

    options: dict[str, Any] = {}
    if args.semantic_model is not None:
        options["semantic_model"] = args.semantic_model
    model = AutoModel.from_pretrained(args.source, **options)
    model.save_pretrained(args.destination)
    _say(f"{args.source} -> {args.destination} (Transformers layout)")
    return 0


def cmd_random_checkpoint(args: argparse.Namespace) -> int:
    """A randomly initialised full-size checkpoint, for trying the pipeline where the hub is unreachable."""
    torch.manual_seed(args.seed)
    if args.codec == "xcodec2":
        from xcodec.configs.xcodec2 import Xcodec2Config
        from xcodec.models.xcodec2 import Xcodec2Model

        model: CodecModel = Xcodec2Model(Xcodec2Config())
    elif args.codec == "neucodec":
        from xcodec.configs.neucodec import NeuCodecConfig
        from xcodec.models.neucodec import NeuCodecModel

        model = NeuCodecModel(NeuCodecConfig())
    elif args.codec == "distill_neucodec":
        from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
        from xcodec.models.distill_neucodec import DistillNeuCodecModel

        model = DistillNeuCodecModel(DistillNeuCodecConfig())
    else:
        from xcodec.configs.xcodec import XcodecConfig
        from xcodec.models.xcodec import XcodecModel

        model = XcodecModel(XcodecConfig())
    model.save_pretrained(args.destination)
    _say(f"wrote a random-weight {args.codec} checkpoint to {args.destination} (for testing only)")
    return 0


def _finish(failures: list[str], total: int) -> int:
    for failure in failures:
        _say(f"error: {failure}")
    if failures:
        _say(f"{len(failures)} of {total} file(s) failed")
        return 1
    return 0


def _add_model_options(parser: argparse.ArgumentParser, default_model: str | None = DEFAULT_MODEL) -> None:
    parser.add_argument(
        "--model",
        default=default_model,
        help=f"hub id or local checkpoint folder (default: {default_model or 'the one named in the codes file'})",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio per batch")
    parser.add_argument("--offline", action="store_true", help="use only the local hub cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcodec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="audio files -> one .npz of codes each")
    p.add_argument("audio", nargs="+", help="audio files (any format libsndfile reads, any rate)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (X-Codec only; default: highest)")
    _add_model_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".npz codes -> wav files (--stream: codes -> PCM on stdout)")
    p.add_argument("codes", nargs="+", help=".npz files written by `xcodec encode` (--stream: one, or -)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output folder (not with --stream)")
    _add_model_options(p, default_model=None)
    from xcodec.streaming_cli import add_stream_options

    add_stream_options(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("reconstruct", help="audio -> codes -> audio")
    p.add_argument("audio")
    p.add_argument("-o", "--output", type=Path, required=True, help="output wav file")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (X-Codec only)")
    _add_model_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("convert", help="original-layout checkpoint -> Transformers layout")
    p.add_argument("source", help="checkpoint folder, .pth file or hub id")
    p.add_argument("destination", type=Path)
    p.add_argument(
        "--semantic-model",
        default=None,
        help="NeuCodec original layout: hub id or folder of the W2V-BERT 2.0 weights "
        "(default facebook/w2v-bert-2.0); DistillNeuCodec: of DistilHuBERT (default ntu-spml/distilhubert)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("random-checkpoint", help="write a random-weight full-size checkpoint (testing)")
    p.add_argument("codec", choices=["xcodec2", "neucodec", "distill_neucodec", "xcodec"])
    p.add_argument("destination", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_random_checkpoint)

    from xcodec.dataset.cli import add_tokenize_command

    add_tokenize_command(sub)

    from xcodec.train.cli import add_train_command

    add_train_command(sub)

    from xcodec.evaluation.cli import add_eval_command

    add_eval_command(sub)

    from xcodec.onnx.cli import add_export_onnx_command

    add_export_onnx_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except XcodecError as exc:
        _say(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
