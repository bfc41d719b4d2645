"""Run by test_trainer_ddp.py under torch.distributed.run with 2 CPU processes; writes per-rank results."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_toys import LinearToy, regression_mse  # noqa: E402

from recsys.training import Trainer, is_distributed, rank, seed_everything, world_size  # noqa: E402
from recsys.training.distributed import destroy_distributed  # noqa: E402


def main(out: Path) -> None:
    seed_everything(0)
    batches = torch.load(out / "batches.pt")  # list of 2 batches: rank r takes batch r
    model = LinearToy(dim=4)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    one_step = Trainer(epochs=1, device="cpu", progress=False, patience=None).fit(
        model, batches, functools.partial(torch.optim.SGD, lr=0.1)
    )
    after_one_step = {k: v.clone() for k, v in model.state_dict().items()}

    calls = []
    scripted = iter([1.0, 2.0, 1.5, 1.2, 1.1, 9.0, 9.0, 9.0])

    def validate(m: LinearToy) -> dict[str, float]:
        calls.append(regression_mse(m, dim=4))
        return {"score": next(scripted)}

    result = Trainer(epochs=8, device="cpu", progress=False, monitor="score", mode="max", patience=3).fit(
        model,
        batches * 3,
        functools.partial(torch.optim.Adam, lr=0.05),
        validate=validate,
        run_dir=out / "run",
    )
    torch.save(
        {
            "distributed": is_distributed(),
            "rank": rank(),
            "world_size": world_size(),
            "initial": initial,
            "after_one_step": after_one_step,
            "final": model.state_dict(),
            "validate_calls": len(calls),
            "validated_mse": calls,
            "stopped_early": result.stopped_early,
            "best_epoch": result.best_epoch,
            "history_len": len(result.history),
            "one_step_epochs": len(one_step.history),
        },
        out / f"rank{rank()}.pt",
    )
    destroy_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
