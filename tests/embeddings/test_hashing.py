"""Hashing: deterministic across processes, equal to a numpy uint64 reference, honest collision reports."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recsys.embeddings import collision_report, hash_ids, hash_strings

SCRIPT = (
    "import torch; from recsys.embeddings import hash_ids, hash_strings; "
    "print(hash_ids(torch.tensor([0, 1, -5, 2**62, 123456789]), 1000, seed=3).tolist(), "
    "hash_strings(['a', 'user_42', 'é']).tolist())"
)


def _in_subprocess(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


@pytest.mark.slow
def test_hashes_are_identical_across_processes_with_different_hash_seeds():
    first, second = _in_subprocess("1"), _in_subprocess("12345")
    assert first == second
    here = f"{hash_ids(torch.tensor([0, 1, -5, 2**62, 123456789]), 1000, seed=3).tolist()} {hash_strings(['a', 'user_42', 'é']).tolist()}"
    assert first == here


def test_hash_matches_numpy_uint64_splitmix_reference():
    ids = np.array([0, 1, 2, -1, 2**40 + 7, -(2**63)], dtype=np.int64)
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)  # seed 0 -> (0 + 1) * golden
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    expected = (z >> np.uint64(1)) % np.uint64(997)
    assert hash_ids(torch.from_numpy(ids), 997).tolist() == expected.astype(np.int64).tolist()


def test_hash_spreads_ids_and_seeds_differ():
    buckets = hash_ids(torch.arange(100_000), 100)
    counts = torch.bincount(buckets, minlength=100)
    assert counts.min() > 850 and counts.max() < 1150
    assert not torch.equal(hash_ids(torch.arange(100), 10**6, seed=0), hash_ids(torch.arange(100), 10**6, seed=1))


def test_collision_report_is_close_to_uniform_expectation():
    report = collision_report(torch.arange(20_000).repeat(3), num_buckets=100_000)
    assert report.num_ids == 20_000 and report.occupied_buckets <= 20_000
    assert abs(report.collision_rate - report.expected_collision_rate) < 0.03
    assert "collide" in str(report)
    assert collision_report(torch.arange(10), num_buckets=1).collision_rate == 1.0
