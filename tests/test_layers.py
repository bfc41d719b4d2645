"""The layering contract in pyproject.toml ([tool.importlinter]) holds: imports flow one way, no package cycles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}  # analyse the package under `root`, not the installed one
    return subprocess.run([str(lint), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_imports_flow_one_way() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """Control: a data module importing the models layer breaks the contract (the check can fail)."""
    shutil.copytree(ROOT / "recsys", tmp_path / "recsys", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "recsys" / "data" / "_probe.py").write_text("from recsys.models import base  # noqa: F401\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "recsys.data._probe -> recsys.models.base" in done.stdout
