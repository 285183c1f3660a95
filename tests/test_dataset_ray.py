"""`--engine ray` on a local Ray instance gives the same shards as the local engine."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _oracle import require_oracle

# Ray is the optional extra xcodec[ray]; the [test] extra installs it, so CI fails without it.
require_oracle("pyarrow")
ray = require_oracle("ray")
require_oracle("ray.data")

from test_dataset_support import TESTS_DIR, build_corpus, make_fake_codec  # noqa: E402

from xcodec.dataset import TokenizeOptions, read_tokens, tokenize_corpus  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine(local_ray: None, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    good, bad = build_corpus(corpus)
    common = {"input": str(corpus), "num_workers": 0, "shard_size": 3, "progress": False}
    local = tokenize_corpus(TokenizeOptions(out=str(tmp_path / "local"), **common), make_fake_codec)  # type: ignore[arg-type]
    on_ray = tokenize_corpus(
        TokenizeOptions(out=str(tmp_path / "ray"), engine="ray", ray_batch_size=4, **common),  # type: ignore[arg-type]
        make_fake_codec,
    )
    assert on_ray.exit_status == local.exit_status == 1
    for key in ("num_items", "num_encoded", "num_failed", "num_shards", "total_audio_seconds", "config_hash"):
        assert on_ray.summary[key] == local.summary[key], key
    assert read_tokens(tmp_path / "ray").equals(read_tokens(tmp_path / "local"))
    ray_errors = (tmp_path / "ray" / "errors.jsonl").read_text().splitlines()
    assert sorted(json.loads(e)["source"] for e in ray_errors) == sorted(str(p.resolve()) for p in bad)
    assert len(good) == on_ray.summary["num_encoded"]


@pytest.mark.slow
def test_ray_engine_resumes_a_lost_shard(local_ray: None, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    build_corpus(corpus)
    options = TokenizeOptions(
        input=str(corpus),
        out=str(tmp_path / "ray"),
        engine="ray",
        ray_batch_size=4,
        num_workers=0,
        shard_size=3,
        progress=False,
    )
    tokenize_corpus(options, make_fake_codec)
    first = read_tokens(tmp_path / "ray")
    lost = sorted((tmp_path / "ray" / "data").glob("*.parquet"))[2]
    lost.unlink()
    again = tokenize_corpus(options, make_fake_codec)
    assert again.summary["last_run"]["shards_written"] == 1
    assert read_tokens(tmp_path / "ray").equals(first)
