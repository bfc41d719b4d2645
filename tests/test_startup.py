"""Start-up of the default run: what it imports (in a fresh interpreter) stays light, and the bench reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.benchmarks import startup

ROOT = Path(__file__).resolve().parents[1]
#: Heavy packages a default BPR run does not need: each costs 0.1-0.8 s to import.
NOT_IMPORTED = ("sklearn", "scipy", "pandas", "matplotlib", "torch._dynamo", "sympy", "transformers")

# The default run's imports, then what it does with its optimizer (the config's factory, as the CLI builds it).
_CHILD = """import json, sys
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
factory = instantiate(OmegaConf.load("conf/model/bpr.yaml").optimizer)
w = torch.nn.Parameter(torch.ones(3))
opt = factory([w])
w.grad = torch.ones(3)
opt.step()
opt.zero_grad()
opt.load_state_dict(opt.state_dict())
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {n.split(".")[0] for n in %r})))
"""


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    """Modules of the :data:`NOT_IMPORTED` packages loaded by the default run's imports and optimizer use."""
    child = _CHILD % (NOT_IMPORTED,)
    done = subprocess.run([sys.executable, "-c", child, *startup.DEFAULT_RUN_MODULES], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow  # one multi-second subprocess: keeps the default run within its 3 minutes
@pytest.mark.parametrize("name", NOT_IMPORTED)
def test_default_run_does_not_import(loaded: set[str], name: str) -> None:
    assert name not in loaded, f"a default recsys-train imports {name}; import it where it is used"


@pytest.mark.slow
def test_bench_prints_the_import_rows_against_the_goal(capsys: pytest.CaptureFixture[str]) -> None:
    assert startup.main(["--no-train", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for what in startup.IMPORTS:
        assert f"import {what}" in out
    assert "<= 1" in out and "recsys-train wall" not in out


def test_the_speed_claim_is_the_fastest_wall_time_with_its_parts() -> None:
    args = startup.argparse.Namespace(overrides=["trainer.epochs=3"])
    runs = [(9.0, 8.0, 5.0), (7.5, 7.0, 4.0), (8.0, 7.5, 4.5)]  # (wall, cpu, training) seconds
    imports = {"torch (floor)": [2.2, 2.1], "recsys": [0.1, 0.1], "default-run modules": [3.1, 3.0]}
    row = startup.speed_claim(runs, imports, args)
    assert (row["best"], row["low"], row["high"], row["repeats"], row["unit"]) == (7.5, 7.5, 9.0, 3, " s")
    assert row["command"] == "recsys bench startup --repeats 3 trainer.epochs=3"
    assert row["detail"].startswith("training 4.00 s, imports of the default-run modules 3.00 s (`import torch` alone 2.10 s)")
    assert "cores" in row["machine"]
