"""Data-parallel training with 2 CPU processes (gloo) launched by torch.distributed.run."""

from __future__ import annotations

import pytest
import os
import subprocess
import sys
from pathlib import Path

import torch

from recsys.training.distributed import (
    EveryNth,
    is_distributed,
    is_main_process,
    rank,
    shard_batches,
    world_size,
)
from tests.training.training_toys import LinearToy, regression_mse

SCRIPT = Path(__file__).with_name("ddp_script.py")


def test_helpers_outside_a_process_group() -> None:
    assert (is_distributed(), rank(), world_size(), is_main_process()) == (False, 0, 1, True)
    batches = [1, 2, 3]
    assert shard_batches(batches) is batches


def test_every_nth_gives_each_rank_the_same_number_of_batches() -> None:
    shards = [list(EveryNth(range(7), rank=r, world_size=2)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 5]]
    assert len(EveryNth(range(7), rank=0, world_size=2)) == 3


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    batches = [
        {"x": torch.randn(16, 4, generator=generator), "y": torch.randn(16, generator=generator)}
        for _ in range(2)
    ]
    torch.save(batches, tmp_path / "batches.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            str(SCRIPT),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [(r["distributed"], r["rank"], r["world_size"]) for r in ranks] == [(True, 0, 2), (True, 1, 2)]

    # one SGD step, each rank on its own batch == one step on the full batch (gradients averaged)
    initial, stepped = ranks[0]["initial"], ranks[0]["after_one_step"]
    reference = LinearToy(dim=4)
    reference.load_state_dict(initial)
    reference.loss({k: torch.cat([b[k] for b in batches]) for k in batches[0]}).backward()
    for name, param in reference.named_parameters():
        ddp_grad = (initial[name] - stepped[name]) / 0.1
        torch.testing.assert_close(ddp_grad, param.grad, rtol=1e-4, atol=1e-5)
        assert torch.equal(stepped[name], ranks[1]["after_one_step"][name])
    assert ranks[0]["one_step_epochs"] == ranks[1]["one_step_epochs"] == 1

    # a longer run: identical final weights on both ranks, changed from the start
    for name in initial:
        assert torch.equal(ranks[0]["final"][name], ranks[1]["final"][name])
        assert not torch.equal(ranks[0]["final"][name], initial[name])
    # only rank 0 validates; its early-stop decision reaches rank 1; best weights (epoch 2) on both
    assert ranks[0]["validate_calls"] == 5 and ranks[1]["validate_calls"] == 0
    assert all(r["stopped_early"] and r["best_epoch"] == 2 and r["history_len"] == 5 for r in ranks)
    final = LinearToy(dim=4)
    final.load_state_dict(ranks[1]["final"])
    assert regression_mse(final, dim=4) == ranks[0]["validated_mse"][1]
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and (tmp_path / "run" / "metrics.csv").is_file()
