"""Shared fixtures: the repository root, the published paper data (when present) and an offline HF environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def paper() -> Path:
    if not (PAPER / "models.csv").exists():
        pytest.skip(f"published paper outputs not found at {PAPER}")
    return PAPER


@pytest.fixture(autouse=True, scope="session")
def offline_hf(tmp_path_factory):
    """No test may reach the Hugging Face hub; caches live in a throwaway folder."""
    home = tmp_path_factory.mktemp("hf_home")
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
