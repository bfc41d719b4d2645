"""Collaborative-filtering bench: Pop, BPR, NeuMF, ALS, EASE and ``implicit``'s ALS/BPR on one split.

Protocol (BASELINES.md): leave-last-out by time; models are fitted on train + valid and ranked for the
test item with full ranking (training items masked), HR@10/NDCG@10, mean over ``--seeds``; the NCF
paper's sampled protocol (test item vs 100 sampled unseen items) is reported in columns labelled
``[sampled-100]``. Ours run through :func:`recsys.pipeline.run_pipeline` (``fit_on="train+valid"``); ``implicit``'s
factors are scored by the same evaluator on the same split. "fit s" is the fit time alone (ours:
``RunResult.train_seconds``). Every fit runs in a fresh process, so "peak RSS" is that process's high-water mark.
Tables: (1) quality, (2) ours vs ``implicit`` side by side with time and memory ratios, (3) with
``--cv``, the 5-fold RMSE of biased MF (``recsys.benchmarks.cross_validation``).

``python -m recsys.benchmarks.cf --dataset ml-100k --root ../shared/datasets``
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import resource
import statistics
import sys
import time
import warnings
from typing import Any

import torch

from recsys.benchmarks.table import format_table

# Hyperparameters per dataset (tuned on the validation item; implicit's as in BASELINES.md).
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "ml-100k": {
        # BPRMF + implicit's scheme as the Hogwild engine recsys.training.bpr_hogwild (as recsys.estimators.bpr); negatives tuned on the validation item
        "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100, "negatives": "popularity", "batch_size": 1024},
        "neumf": {"gmf_dim": 32, "mlp_dim": 32, "layers": [64, 32, 16], "lr": 0.001, "num_negatives": 4, "batch_size": 1024, "epochs": 15},
        "als": {"factors": 64, "alpha": 5.0, "regularization": 0.1, "iterations": 15},
        "ease": {"reg": 500.0},
        "implicit-bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    },
    "amazon-beauty": {
        # uniform negatives: validation HR@10 0.0664 vs 0.0543 with implicit's popularity-weighted ones (seed 0)
        "bpr": {"factors": 64, "learning_rate": 0.1, "regularization": 0.01, "iterations": 300, "negatives": "uniform", "batch_size": 4096},
        "neumf": {"gmf_dim": 32, "mlp_dim": 32, "layers": [64, 32, 16], "lr": 0.001, "num_negatives": 4, "batch_size": 1024, "epochs": 10},
        "als": {"factors": 64, "alpha": 20.0, "regularization": 0.01, "iterations": 15},
        "ease": {"reg": 50.0},
        "implicit-bpr": {"factors": 64, "learning_rate": 0.1, "regularization": 0.01, "iterations": 300},
    },
}
SETTINGS["ml-latest-small"] = SETTINGS["ml-100k"]
MODELS = ("pop", "bpr", "neumf", "als", "ease", "implicit-als", "implicit-bpr")
DETERMINISTIC = ("pop", "ease")  # one run is every seed's run


def _load(dataset: str, root: str | None):
    from recsys.data.load import load_dataset
    from recsys.data.splits import leave_one_out

    data = load_dataset(dataset, root=root)
    return data, leave_one_out(data)


class _SeededBPR:
    """The BPR Hogwild engine run from the bench's integer seed (``fit_seeded``), as
    ``BayesianPersonalizedRanking(seed=...)`` runs it, so the numbers stay the facade's; keeps the run
    (its ``seconds``: the SGD iterations alone, what ``ours s/iter`` divides)."""

    def __init__(self, engine: Any, seed: int) -> None:
        self.engine, self.seed, self.run = engine, seed, None

    def fit(self, model: Any, train: Any, *, device: torch.device, generator: torch.Generator, progress: bool = True) -> None:
        self.run = self.engine.fit_seeded(model, train, device=device, seed=self.seed, progress=progress)


def _fit_ours(name: str, params: dict[str, Any], data, split, seed: int, device: str, evaluator) -> tuple[Any, float]:
    """Fit one of our models with the pipeline on train + valid, ``evaluator`` on test; returns (run, seconds per
    epoch or iteration). ``run.train_seconds`` is the fit time (prepare, engine and epochs; no evaluation)."""
    from recsys.data.batches import PairwiseBatches
    from recsys.embeddings import SparseSGD
    from recsys.models.als import ALS
    from recsys.models.bpr import BPRMF
    from recsys.models.ease import EASE
    from recsys.models.neumf import NeuMF
    from recsys.models.popularity import Popularity
    from recsys.pipeline import run_pipeline
    from recsys.training import Trainer
    from recsys.training.bpr_hogwild import BPRHogwild

    params = dict(params)
    trainer = Trainer(epochs=params.pop("epochs", 1), device=device, progress=False, patience=None, tensorboard=False)
    run = functools.partial(run_pipeline, data, split=split, trainer=trainer, evaluator=evaluator, seed=seed, fit_on="train+valid")
    if name == "bpr":
        engine = _SeededBPR(BPRHogwild(learning_rate=params["learning_rate"], regularization=params["regularization"],
                                       iterations=params["iterations"], negatives=params["negatives"], batch_size=params["batch_size"],
                                       workers=torch.get_num_threads(), init="uniform"), seed)
        result = run(functools.partial(BPRMF, embedding_dim=params["factors"], reg=params["regularization"]), engine=engine)
        return result, engine.run.seconds / params["iterations"]
    if name == "neumf":
        lr, negatives, batch_size = params.pop("lr"), params.pop("num_negatives"), params.pop("batch_size")
        weight_decay = params.pop("weight_decay", 0.0)
        optimizer = SparseSGD if params.pop("optimizer", "adam") == "sparse_sgd" else torch.optim.Adam
        result = run(functools.partial(NeuMF, **params),
                     batches=functools.partial(PairwiseBatches, batch_size=batch_size, num_negatives=negatives, seed=seed),
                     optimizer=functools.partial(optimizer, lr=lr, weight_decay=weight_decay))
        return result, sum(row["seconds"] for row in result.epochs) / trainer.epochs
    model = {"als": ALS, "ease": EASE, "pop": Popularity}[name]
    result = run(functools.partial(model, **params))
    return result, result.train_seconds / params.get("iterations", 1)


class _Factors(torch.nn.Module):
    """``implicit``'s factors behind the Recommender scoring call, for our evaluator."""

    def __init__(self, users, items) -> None:
        super().__init__()
        self.users, self.items = torch.from_numpy(users.copy()), torch.from_numpy(items.copy())

    def score_users(self, users, history):
        return self.users[users] @ self.items.T

    device = torch.device("cpu")


def _fit_implicit(name: str, params: dict[str, Any], history, seed: int, threads: int) -> tuple[Any, float, float]:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    matrix = history.user_item_matrix()
    csr = sp.csr_matrix((matrix.values().numpy(), matrix.col_indices().numpy(), matrix.crow_indices().numpy()), shape=matrix.shape)
    cls = AlternatingLeastSquares if name == "implicit-als" else BayesianPersonalizedRanking
    model = cls(random_state=seed, num_threads=threads, **params)
    started = time.perf_counter()
    model.fit(csr, show_progress=False)
    seconds = time.perf_counter() - started
    return _Factors(model.user_factors, model.item_factors), seconds, seconds / params["iterations"]


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit and evaluate one (model, seed) in this process; the unit of work of a child process."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(spec["threads"])
    from recsys.evaluation.ranking import RankingEvaluator

    data, split = _load(spec["dataset"], spec["root"])
    history, test = split.train.concat(split.valid), split.test
    name, seed = spec["model"], spec["seed"]
    params = dict(spec["params"])
    full, sampled = (RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"), coverage=False, num_negatives=negatives, seed=seed)
                     for negatives in (None, 100))
    if name.startswith("implicit-"):
        model, seconds, per_step = _fit_implicit(name, params, history, seed, spec["threads"])
        with torch.no_grad():
            metrics = full.evaluate_model(model, history, test)
    else:
        result, per_step = _fit_ours(name, params, data, split, seed, spec["device"], full)
        model, seconds, metrics = result.model, result.train_seconds, result.test
    row = {"seconds": seconds, "per_step": per_step, **metrics}
    with torch.no_grad():
        row.update(sampled.evaluate_model(model, history, test))
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _child(spec: dict[str, Any], send: Any) -> None:
    send.send(run_one(spec))


def _in_child(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_one`` in a fresh (spawned, non-daemonic: it may start Hogwild workers) process."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, send))
    process.start()
    send.close()
    try:
        row = receive.recv()
    except EOFError:
        raise RuntimeError(f"the {spec['model']} run (seed {spec['seed']}) died with exit code {process.join() or process.exitcode}") from None
    process.join()
    return row


def _mean(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0] if k != "num_users"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(SETTINGS))
    parser.add_argument("--root", default=None, help="folder holding the dataset (ml-100k/ or Beauty.txt)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads for ours (torch) and implicit alike")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for our models (cuda adds epoch times)")
    parser.add_argument("--cv", action="store_true", help="also print the 5-fold RMSE of biased MF (ml-100k)")
    parser.add_argument("--cv-root", default=None, help="root for the CV dataset (default: --root)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    if any(m.startswith("implicit-") for m in models):
        try:
            import implicit  # noqa: F401
        except ImportError:
            print("implicit is not installed (pip install 'recsys[bench]'): skipping its rows", file=sys.stderr)
            models = [m for m in models if not m.startswith("implicit-")]

    settings = SETTINGS[args.dataset]
    results: dict[str, dict[str, float]] = {}
    for name in models:
        params = settings.get(name, settings["als"] if name == "implicit-als" else {})
        seeds = 1 if name in DETERMINISTIC else args.seeds
        rows = [
            _in_child({"dataset": args.dataset, "root": args.root, "model": name, "seed": seed, "params": params,
                       "threads": args.threads, "device": args.device})
            for seed in range(seeds)
        ]
        results[name] = _mean(rows)
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)

    sampled = "[sampled-100]"
    print(f"## {args.dataset}: leave-last-out, fit on train+valid, test item ranked; mean of {args.seeds} seeds "
          f"(Pop, EASE deterministic: 1); {args.threads} threads\n")
    print(format_table([
        {"model": name, "HR@10": r["hr@10"], "NDCG@10": r["ndcg@10"],
         f"HR@10 {sampled}": r[f"hr@10{sampled}"], f"NDCG@10 {sampled}": r[f"ndcg@10{sampled}"],
         "fit s": r["seconds"], "peak RSS MiB": r["peak_rss_mib"]}
        for name, r in results.items()
    ]))
    pairs = [(ours, f"implicit-{ours}") for ours in ("als", "bpr") if ours in results and f"implicit-{ours}" in results]
    if pairs:
        print(f"\n## ours vs implicit, same split, same factors, {args.threads} threads each\n")
        print(format_table([
            {"model": ours, "ours s": results[ours]["seconds"], "implicit s": results[peer]["seconds"],
             "time ratio (ours/implicit)": results[ours]["seconds"] / results[peer]["seconds"],
             "ours s/iter": results[ours]["per_step"], "implicit s/iter": results[peer]["per_step"],
             "ours MiB": results[ours]["peak_rss_mib"], "implicit MiB": results[peer]["peak_rss_mib"],
             "memory ratio": results[ours]["peak_rss_mib"] / results[peer]["peak_rss_mib"],
             "ours HR@10": results[ours]["hr@10"], "implicit HR@10": results[peer]["hr@10"],
             "ours NDCG@10": results[ours]["ndcg@10"], "implicit NDCG@10": results[peer]["ndcg@10"],
             "NDCG ratio": results[ours]["ndcg@10"] / max(results[peer]["ndcg@10"], 1e-12)}
            for ours, peer in pairs
        ]))
    if args.device == "cuda":
        print("\n## GPU epoch / iteration times (ours)\n")
        print(format_table([{"model": m, "s per epoch or iteration": results[m]["per_step"]} for m in ("als", "bpr") if m in results]))
    if args.cv:
        from recsys.benchmarks import cross_validation

        print()
        cross_validation.main(["--dataset", "ml-100k", *(["--root", args.cv_root or args.root] if (args.cv_root or args.root) else [])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
