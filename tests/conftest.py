"""Shared fixtures of the cross-package tests."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def offline(monkeypatch):
    """No download attempts, no progress bars."""
    monkeypatch.setenv("NNQ_OFFLINE", "1")
    monkeypatch.setenv("NNQ_PROGRESS", "0")


def shared_data_dir() -> Path | None:
    d = os.environ.get("NNQ_DATA_DIR")
    return Path(d) if d and Path(d).is_dir() else None
