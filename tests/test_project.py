"""The repository itself: what the test command installs, what a missing extra says, and no
path of one particular machine in any tracked file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_torch_the_cross_check_skips_saying_how_to_install_it() -> None:
    blocked = (
        "import sys; sys.modules['torch'] = None; import pytest; "
        "sys.exit(pytest.main(['-rs', '-q', '-p', 'no:cacheprovider', 'tests/test_torch.py']))"
    )
    result = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: the module skipped, nothing ran
    assert "SKIPPED" in result.stdout
    assert "pip install -e '.[test,torch]'" in result.stdout, result.stdout


def test_the_test_extra_leaves_torch_to_an_extra_of_its_own() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert not [req for req in extras["test"] if req.startswith("torch")]
    assert [req for req in extras["torch"] if req.startswith("torch")]


def test_no_tracked_file_names_a_path_of_one_machine() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    prefixes = ["/" + name + "/" for name in ("work", "home", "root", "tmp", "Users")]
    found = []
    for name in listed.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        found += [f"{name}: {prefix}" for prefix in prefixes if prefix in text]
    assert found == []
