"""ruff check and ruff format --check over the whole tree (configured in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff(*args):
    exe = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
        "ruff"
    )
    assert exe, "ruff is not installed (it is a pinned dependency: make venv)"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff(args):
    res = _ruff(*args)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_ruff_finds_a_problem(tmp_path):
    """The check can fail: an unused import and unformatted code are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=1\n")
    assert _ruff("check", "--no-cache", str(bad)).returncode != 0
    assert _ruff("format", "--check", "--no-cache", str(bad)).returncode != 0
