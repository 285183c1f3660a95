"""Run a codec over audio files and score what comes back (:func:`evaluate`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from xcodec.api import Codec
from xcodec.audio import resample
from xcodec.errors import ArgumentError, XcodecError
from xcodec.evaluation.report import EvalReport, FileResult, ItemFailure, RunReport
from xcodec.metrics import (
    asr_wer,
    check_asr_available,
    check_available,
    codebook_usage,
    dnsmos,
    mel_correlation,
    mel_distance,
    multi_resolution_stft_distance,
    pesq_nb,
    pesq_wb,
    si_sdr,
    snr_db,
    stoi,
    token_agreement,
)

__all__ = ["AUDIO_EXTENSIONS", "evaluate", "expand_inputs", "score"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to the audio files under them (recursive, sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise ArgumentError(
                    f"{path}: the folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
                )
            files += found
        else:
            files.append(path)  # a missing or bad file is that item's error, reported later
    return files


def score(
    reference: torch.Tensor,
    decoded: torch.Tensor,
    sample_rate: int,
    *,
    perceptual: bool = True,
    asr: bool = False,
) -> dict[str, float | None]:
    """All waveform metrics of ``decoded`` against ``reference``, both ``(samples,)`` at ``sample_rate``.

    perceptual: False leaves STOI, PESQ and DNSMOS out (None); they need the ``eval`` extra
    and take most of the time.
    asr: True adds ``asr_wer``, the word error rate of an English recogniser on the decoded
    audio against its transcript of the reference (the ``asr`` extra); None otherwise.
    """
    metrics: dict[str, float | None] = {
        "mel_distance": mel_distance(reference, decoded, sample_rate),
        "stft_distance": multi_resolution_stft_distance(reference, decoded),
        "si_sdr": si_sdr(reference, decoded),
        "snr": snr_db(reference, decoded),
        "mel_correlation": mel_correlation(reference, decoded, sample_rate),
    }
    names = ("stoi", "pesq_wb", "pesq_nb", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
    metrics.update(dict.fromkeys(names))
    if perceptual:
        length = min(reference.shape[-1], decoded.shape[-1])
        mos = dnsmos(decoded[:length], sample_rate)
        metrics.update(
            stoi=stoi(reference, decoded, sample_rate),
            pesq_wb=pesq_wb(reference, decoded, sample_rate),
            pesq_nb=pesq_nb(reference, decoded, sample_rate),
            dnsmos_sig=mos.sig,
            dnsmos_bak=mos.bak,
            dnsmos_ovrl=mos.ovrl,
        )
    metrics["asr_wer"] = asr_wer(reference, decoded, sample_rate) if asr else None
    return metrics


def _dtype_name(codec: Codec) -> str:
    return str(next(codec.model.parameters()).dtype).removeprefix("torch.")


def _run(
    codec: Codec,
    files: Sequence[Path],
    label: str,
    bandwidth: float | None,
    perceptual: bool,
    asr: bool,
    failures: dict[str, str],
    progress: Callable[[str], None] | None,
) -> tuple[RunReport, dict[str, torch.Tensor]]:
    results: list[FileResult] = []
    codes_by_file: dict[str, torch.Tensor] = {}
    for index, path in enumerate(files):
        source = str(path)
        try:
            prepared = codec.prepare(path, index=index)  # (samples,) at the codec's input rate
            codes = codec.encode_prepared([prepared], bandwidth=bandwidth)[0]
            decoded = codec.decode_checked([codes])[0].float()
            if codec.sample_rate != codec.input_sample_rate:
                decoded = resample(decoded, codec.sample_rate, codec.input_sample_rate)
            metrics = score(
                prepared.waveform.float(), decoded, codec.input_sample_rate, perceptual=perceptual, asr=asr
            )
        except XcodecError as exc:
            failures.setdefault(source, str(exc))
            continue
        finally:
            if progress is not None:
                progress(f"[{label}] {source}")
        duration = prepared.waveform.shape[-1] / codec.input_sample_rate
        results.append(FileResult(source, duration, metrics))
        codes_by_file[source] = codes
    usage = codebook_usage(list(codes_by_file.values()), codec.codebook_size) if codes_by_file else []
    report = RunReport(label, codec.model_id, _dtype_name(codec), bandwidth, results, usage)
    return report, codes_by_file


def evaluate(
    codec: Codec,
    files: Iterable[str | os.PathLike[str]],
    *,
    bandwidth: float | None = None,
    against: Codec | None = None,
    against_bandwidth: float | None = None,
    perceptual: bool = True,
    asr: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Encode and decode each file with ``codec`` (and ``against``, if given) and score the result.

    files: audio files or folders (expanded recursively to their audio files).
    The reference is the file as the codec sees it: mono, resampled to
    ``codec.input_sample_rate``; decoded audio at another rate (NeuCodec: 24 kHz) is
    resampled to that rate, and both are cut to the shorter length.
    against: a second configuration (another model, or the same at another dtype); its
        files are scored the same way and ``token_agreement`` compares the two runs' codes
        over the files both encoded (bandwidth ``against_bandwidth``, default ``bandwidth``).
    perceptual: False skips STOI, PESQ and DNSMOS (the ``eval`` extra; most of the time).
    asr: True adds the word error rate of an English recogniser (PocketSphinx, the ``asr``
        extra) on the decoded audio against its transcript of the input; English speech only.
    progress: called after each file of each run with a short line naming them.

    A file that cannot be read or encoded is listed in ``failures``; the others are
    still evaluated. A bandwidth the model lacks raises ArgumentError, and a missing
    ``eval`` extra (with ``perceptual``) an XcodecError naming it, before any file is read.
    """
    paths = expand_inputs(files)
    if not paths:
        raise ArgumentError("evaluate: no files given")
    # Job-level errors first, not one failure per file.
    if perceptual:
        check_available()
    if asr:
        check_asr_available()
    codec.model.check_bandwidth(bandwidth)
    if against is not None:
        against.model.check_bandwidth(bandwidth if against_bandwidth is None else against_bandwidth)
    failures: dict[str, str] = {}
    first, first_codes = _run(codec, paths, "A", bandwidth, perceptual, asr, failures, progress)
    runs = [first]
    agreement = None
    if against is not None:
        second_bandwidth = bandwidth if against_bandwidth is None else against_bandwidth
        second, second_codes = _run(
            against, paths, "B", second_bandwidth, perceptual, asr, failures, progress
        )
        runs.append(second)
        shared = [s for s in first_codes if s in second_codes]
        if shared:
            agreement = token_agreement([first_codes[s] for s in shared], [second_codes[s] for s in shared])
    return EvalReport(runs, agreement, [ItemFailure(s, m) for s, m in failures.items()])
