"""SIGKILL a training run at random points, 20 times, and resume each from its last.pt: every resumed chain
ends with the test metrics of an uninterrupted seeded run, and no temporary file is left anywhere.

Half the kills land in a random moment of an epoch, half inside a checkpoint write: a ``sitecustomize`` on
the children's path makes ``os.fsync`` (called by ``atomic_write`` before its rename) sleep, so the test
can see the temporary file and kill the process while it exists.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.training import load_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 20
CHAINS, KILLS_PER_CHAIN = 2, 5  # 10 kills, 4 of them inside a checkpoint write (~100 s)
SITECUSTOMIZE = '''
import os, time
_fsync, _pause = os.fsync, float(os.environ.get("RECSYS_FAULT_FSYNC_SLEEP", "0"))
def fsync(fd):
    time.sleep(_pause)
    _fsync(fd)
os.fsync = fsync
'''


def overrides(cache: Path) -> list[str]:
    return ["dataset.k_core=50", f"dataset.cache_dir={cache}", f"trainer.epochs={EPOCHS}", "trainer.patience=null",
            "trainer.threads=1", "trainer.progress=false", "trainer.tensorboard=false",
            "compare_to_popularity=false", "model.batches.batch_size=256", "seed=0",
            "trainer.checkpoint_every_s=0"]  # last.pt every epoch: a resumed run that stops improving still writes it


def start(run_dir: Path, cache: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "recsys", "train", *overrides(cache), f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(command, cwd=run_dir.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0, poll: float = 0.002) -> bool:
    """Poll ``condition()`` until it holds (True) or ``process`` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(poll)
    raise TimeoutError("the training process made no progress")


def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "RECSYS_FAULT_FSYNC_SLEEP": "0.05"}
    cache = tmp_path / "cache"
    rng = random.Random(0)
    reference = start(tmp_path / "reference", cache, env)  # runs beside the first chain
    reference_err = None
    kills = {"epoch": 0, "write": 0}
    finals = []
    for chain in range(CHAINS):
        base = tmp_path / f"chain{chain}"
        base.mkdir()
        source: Path | None = None
        for step in range(KILLS_PER_CHAIN + 1):
            run_dir = base / f"p{step}"
            process = start(run_dir, cache, env, *([f"resume_from={source / 'last.pt'}"] if source else []))
            if step == KILLS_PER_CHAIN:
                assert process.wait(timeout=300) == 0, process.stderr.read()
                finals.append(run_dir)
                break
            assert wait_for((run_dir / "last.pt").is_file, process), process.stderr.read()
            assert load_checkpoint(run_dir / "last.pt", mmap=True)["epoch"] <= EPOCHS - 3, "too few epochs left"
            if step % 2:  # inside a checkpoint write
                wait_for(lambda: any(run_dir.glob(".*.tmp")), process)
                kills["write"] += 1
            else:  # anywhere in an epoch
                time.sleep(rng.uniform(0.0, 0.8))
                kills["epoch"] += 1
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
            source = run_dir
        if chain == 0:
            reference_err = reference.communicate(timeout=300)[1]
            assert reference.returncode == 0, reference_err
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())["test"]
    for final in finals:
        assert json.loads((final / "metrics.json").read_text())["test"] == expected, final
    assert sum(kills.values()) == CHAINS * KILLS_PER_CHAIN and kills["write"] == CHAINS * (KILLS_PER_CHAIN // 2), kills
    assert sorted(str(p) for p in tmp_path.rglob("*.tmp")) == []
    print(f"\nSIGKILL: {kills['epoch']} during epochs, {kills['write']} during checkpoint writes; "
          f"{len(finals)} resumed chains equal the uninterrupted run")
