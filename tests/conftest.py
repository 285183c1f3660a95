"""Shared fixtures: the recordings in ../shared, and skips that say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XCODEC_SHARED", REPO.parent / "shared"))
AUDIO_DIR = SHARED / "audio"
FIXTURES_DIR = SHARED / "fixtures"


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """../shared/audio, or a skip naming what is missing (a user's fresh clone has no ../shared)."""
    if not (AUDIO_DIR / "speech_en.flac").exists():
        pytest.skip(f"real recordings not found at {AUDIO_DIR} (set XCODEC_SHARED to the shared folder)")
    return AUDIO_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES_DIR.exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES_DIR} (set XCODEC_SHARED)")
    return FIXTURES_DIR


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
