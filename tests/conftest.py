"""Fixtures shared by the test files that run mgx in a directory of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory holding tiny.txt, a data set of seven names."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text("\n".join(TINY_DOCS) + "\n")
    return tmp_path
