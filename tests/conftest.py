"""Shared fixtures: where the real datasets live, and skipping when they are absent; one torch thread for tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATASETS = Path(
    os.environ.get("RECSYS_SHARED_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS} (set RECSYS_SHARED_DATASETS)")
    return SHARED_DATASETS


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread for the test (tiny models: threads only contend), restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
