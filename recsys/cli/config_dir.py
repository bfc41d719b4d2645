"""Where the Hydra configs live: inside the installed package, or in the checkout's ``conf/``."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """``recsys/conf`` in an installed wheel, else the top-level ``conf/`` of an editable checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"recsys configs not found in {package / 'conf'} or {package.parent / 'conf'}")
