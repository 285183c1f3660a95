"""The corpus tokenizer: every input exactly once, tokens equal to `xcodec encode`, errors recorded."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _asserts import assert_codes_vary
from _oracle import require_oracle
from _tiny import save_tiny_xcodec2

pa = require_oracle("pyarrow")
pq = require_oracle("pyarrow.parquet")

from test_dataset_support import (  # noqa: E402
    FACTORY,
    REAL,
    build_corpus,
    make_fake_codec,
)

from xcodec.cli import main  # noqa: E402
from xcodec.dataset import TokenizeOptions, read_tokens, tokenize_corpus  # noqa: E402
from xcodec.errors import XcodecError  # noqa: E402


@pytest.fixture
def fake_corpus(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    root = tmp_path / "corpus"
    good, bad = build_corpus(root)
    return root, good, bad


def run(corpus: Path | str, out: Path, **overrides: Any) -> Any:
    options = TokenizeOptions(
        input=str(corpus), out=str(out), model="unused", num_workers=0, shard_size=3, progress=False
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return tokenize_corpus(options, make_fake_codec)


def expected_codes(path: Path) -> list[list[int]]:
    """What `xcodec encode` gives for the file: Codec.encode of the path."""
    codes = make_fake_codec(None, None).encode(path)
    assert isinstance(codes, torch.Tensor)
    return codes.to(torch.int32).tolist()


def check_output(out: Path, good: list[Path], bad: list[Path]) -> dict[str, dict[str, Any]]:
    """Every good file once with its `xcodec encode` tokens; every bad file once in errors.jsonl."""
    table = read_tokens(out)
    rows = table.to_pylist()
    sources = [r["source"] for r in rows]
    assert len(sources) == len(set(sources)), "an item was written twice"
    assert sorted(sources) == sorted(str(p.resolve()) for p in good)
    for row in rows:
        codes = expected_codes(Path(row["source"]))
        assert row["audio_codes"] == codes, row["source"]
        assert row["num_codebooks"] == len(codes)
        assert row["num_frames"] == len(codes[0])
        assert row["duration"] == pytest.approx(row["num_samples"] / row["sample_rate"])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errors) == sorted(str(p.resolve()) for p in bad)
    for error in errors:
        assert Path(error["source"]).name in error["reason"]
    for shard in sorted((out / "data").glob("*.parquet")):
        pq.read_table(shard)  # every shard readable
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_items"], summary["num_encoded"], summary["num_failed"]) == (
        len(good) + len(bad),
        len(good),
        len(bad),
    )
    assert summary["total_audio_seconds"] == pytest.approx(sum(r["duration"] for r in rows), abs=1e-3)
    return {r["id"]: r for r in rows}


def test_folder_every_file_once_with_encode_tokens(
    fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, good, bad = fake_corpus
    result = run(root, tmp_path / "out")
    assert result.exit_status == 1  # some inputs failed
    rows = check_output(tmp_path / "out", good, bad)
    # ids: path relative to the folder without extension; a clash keeps the extension
    assert {
        "tone_16k",
        "sub/tone_22k",
        "sub/deeper/tone_48k_stereo",
        "same_name.wav",
        "same_name.flac",
    } <= set(rows)
    assert rows["tone_8k"]["original_sample_rate"] == 8000
    assert rows["sub/deeper/tone_48k_stereo"]["original_sample_rate"] == 48000
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model_id"] == "test/energy-codec"
    assert summary["num_shards"] == 4  # 12 items, 3 per shard


def test_real_recordings_with_decode_workers(audio_dir: Path, tmp_path: Path) -> None:
    good, bad = build_corpus(tmp_path / "corpus", audio_dir)
    run(tmp_path / "corpus", tmp_path / "out", num_workers=1, shard_size=5, batch_seconds=8.0)
    rows = check_output(tmp_path / "out", good, bad)
    assert {f"real/{Path(n).stem}" for n in REAL} <= set(rows)


def test_manifests_keep_passthrough_columns(
    fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, good, bad = fake_corpus
    files = good[:3] + bad[:1]
    relative = [p.relative_to(root).as_posix() for p in files]
    with open(root / "list.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "text", "duration"])
        for number, rel in enumerate(relative):
            writer.writerow([f"utt{number}", rel, f"words {number}", "1.5"])
    (root / "list.jsonl").write_text(
        "".join(
            json.dumps({"audio_filepath": str(root / rel), "text": f"words {n}", "speaker": n}) + "\n"
            for n, rel in enumerate(relative)
        )
    )
    (root / "list.txt").write_text("# a comment\n" + "\n".join(relative) + "\n")
    for manifest in ("list.csv", "list.jsonl", "list.txt"):
        out = tmp_path / manifest
        run(root / manifest, out)
        rows = check_output(out, good[:3], bad[:1])
        if manifest == "list.csv":
            assert set(rows) == {"utt0", "utt1", "utt2"}
            assert rows["utt1"]["text"] == "words 1"
            assert rows["utt1"]["input_duration"] == "1.5"  # clashes with our column: renamed
        if manifest == "list.jsonl":
            by_text = {r["text"]: r for r in rows.values()}
            assert by_text["words 2"]["speaker"] == 2  # JSON types survive
        if manifest == "list.txt":
            assert set(rows) == {Path(r).with_suffix("").as_posix() for r in relative[:3]}


def test_glob_and_duplicate_ids(fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    root, good, _ = fake_corpus
    run(str(root / "**" / "*.flac"), tmp_path / "glob")
    flacs = [p for p in good if p.suffix == ".flac"]
    assert sorted(read_tokens(tmp_path / "glob").column("source").to_pylist()) == sorted(
        str(p) for p in flacs
    )
    with open(root / "dup.csv", "w") as handle:
        handle.write("id,path\na,tone_16k.wav\na,tone_8k.wav\n")
    with pytest.raises(XcodecError, match="'a' appears more than once"):
        run(root / "dup.csv", tmp_path / "dup")


def test_rerun_redoes_only_missing_shards(
    fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, good, bad = fake_corpus
    out = tmp_path / "out"
    run(root, out)
    shards = sorted((out / "data").glob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    (out / "_xcodec" / "tmp" / "leftover.parquet.123").write_bytes(b"half a shard")
    second = run(root, out)
    assert second.summary["last_run"]["shards_written"] == 1
    assert shards[1].exists()
    for path in (shards[0], shards[2], shards[3]):
        assert path.stat().st_mtime_ns == before[path]
    assert not list((out / "_xcodec" / "tmp").iterdir())
    check_output(out, good, bad)
    # A finished job reruns as a no-op with the same summary counts.
    third = run(root, out)
    assert third.summary["last_run"]["shards_written"] == 0
    assert third.summary["num_encoded"] == len(good)


def test_a_different_job_in_the_same_folder_is_refused(
    fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, good, bad = fake_corpus
    out = tmp_path / "out"
    run(root, out)
    with pytest.raises(XcodecError, match=r"different tokenize job.*shard_size"):
        run(root, out, shard_size=5)
    run(root, out, shard_size=5, overwrite=True)
    assert len(list((out / "data").glob("*.parquet"))) == 3
    check_output(out, good, bad)


def test_datasets_inputs(fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    """A `datasets` save_to_disk folder and a Parquet file, each with an Audio column of file bytes."""
    datasets = require_oracle("datasets")
    _, good, bad = fake_corpus
    files = good[:4] + bad[2:3]
    records = {
        "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in files],
        "text": [f"text {i}" for i in range(len(files))],
        "key": [f"k{i}" for i in range(len(files))],
    }
    # Cast after building: encoding through the Audio feature would need torchcodec.
    dataset = datasets.Dataset.from_dict(records).cast_column("audio", datasets.Audio(decode=False))
    dataset.save_to_disk(str(tmp_path / "saved"))
    dataset.to_parquet(str(tmp_path / "table.parquet"))
    for name in ("saved", "table.parquet"):
        out = tmp_path / f"out_{name}"
        result = run(tmp_path / name, out, id_column="key")
        assert result.summary["num_failed"] == 1
        rows = {r["id"]: r for r in read_tokens(out).to_pylist()}
        assert sorted(rows) == ["k0", "k1", "k2", "k3"]
        for i in range(4):
            assert rows[f"k{i}"]["audio_codes"] == expected_codes(files[i])
            assert rows[f"k{i}"]["text"] == f"text {i}"
        errors = (out / "errors.jsonl").read_text()
        assert '"id": "k4"' in errors


@pytest.mark.slow
def test_several_device_processes_match_one(
    fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, good, bad = fake_corpus
    run(root, tmp_path / "one")
    run(root, tmp_path / "two", devices=["cpu", "cpu"])
    check_output(tmp_path / "two", good, bad)
    one = read_tokens(tmp_path / "one").sort_by("id")
    two = read_tokens(tmp_path / "two").sort_by("id")
    assert one.equals(two)


def test_cli_tokenize(fake_corpus: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    root, good, bad = fake_corpus
    out = tmp_path / "out"
    status = main(
        [
            "tokenize",
            str(root),
            "--out",
            str(out),
            "--codec-factory",
            FACTORY,
            "--num-workers",
            "0",
            "--no-progress",
        ]
    )
    assert status == 1
    check_output(out, good, bad)
    clean = main(
        [
            "tokenize",
            str(good[0]),
            "--out",
            str(tmp_path / "one"),
            "--codec-factory",
            FACTORY,
            "--num-workers",
            "0",
            "--no-progress",
        ]
    )
    assert clean == 0


def tiny_xcodec2_folder(folder: Path) -> Path:
    """The shared tiny random X-Codec2 (perturbed: varied codes) in the Transformers layout, for ``--model``."""
    save_tiny_xcodec2(folder)
    return folder


def test_tiny_xcodec2_tokens_equal_xcodec_encode(tmp_path: Path) -> None:
    """The real model through ``--model``: shards hold exactly what `xcodec encode` writes."""
    import numpy as np

    torch.set_num_threads(1)
    model = tiny_xcodec2_folder(tmp_path / "tiny")
    corpus = tmp_path / "corpus"
    good, bad = build_corpus(corpus)
    out = tmp_path / "out"
    status = main(
        [
            "tokenize",
            str(corpus),
            "--out",
            str(out),
            "--model",
            str(model),
            "--shard-size",
            "4",
            "--num-workers",
            "0",
            "--batch-seconds",
            "3",
            "--no-progress",
        ]
    )
    assert status == 1
    assert main(["encode", *map(str, good[:4]), "-o", str(tmp_path / "npz"), "--model", str(model)]) == 0
    rows = {r["source"]: r for r in read_tokens(out).to_pylist()}
    assert sorted(rows) == sorted(str(p) for p in good)
    for path in good[:4]:
        with np.load(tmp_path / "npz" / f"{path.stem}.npz") as npz:
            # Equal constant codes would pass with the wrong audio in the wrong row.
            assert_codes_vary(torch.from_numpy(npz["audio_codes"]), min_distinct=5, what=path.name)
            assert rows[str(path)]["audio_codes"] == npz["audio_codes"].tolist(), path
            assert rows[str(path)]["num_samples"] == int(npz["num_samples"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_class"] == "xcodec.models.xcodec2.Xcodec2Model"
    assert summary["num_failed"] == len(bad)
