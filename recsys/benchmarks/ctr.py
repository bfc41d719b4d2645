"""Benchmark: CTR models on MovieLens (label rating >= 4), ours side by side with DeepCTR-Torch's DeepFM.

Two tables:

- ``quality``: LR, FM and DeepFM (ours) on ml-100k (user, item, age bucket, gender, occupation, zip prefix,
  genres) and ml-latest-small (user, item, genres, tags); seeded 80/10/10 random split, early stopping on
  validation AUC, test AUC and log loss (mean over ``--seeds``).
- ``compare``: our DeepFM and DeepCTR-Torch's DeepFM (``pip install deepctr-torch``, the ``bench`` extra)
  on the same encoded ids, fields, embedding size, DNN sizes, batch size and epochs, both fp32; test AUC, log
  loss, training samples/s (training time only: ours the Trainer's epochs, theirs ``fit``), peak RSS, and
  ratios. A separate, labelled row trains ours under bfloat16 autocast (``--no-bf16-row`` drops it).
  ``--repeats`` runs every variant several times (alternating) and keeps the fastest, for a shared machine.
  Ours trains with the Trainer's defaults, ``cpu_keep_memory`` included (glibc keeps freed buffers in-process;
  ``--no-keep-memory`` ablates it); ``--tuned-malloc`` applies the same tuning to theirs, just before ``fit``.
  ``--ddp N`` adds a labelled row: ours fp32 as N data-parallel processes of 1 torch thread each
  (DistributedDataParallel, gloo), each rank taking ``batch / N`` rows of every global batch, so it is the
  same synchronous batch-``batch`` optimization; rank 0's training time, rank 0 evaluates, peak RSS summed.

Every (model, seed) runs in a fresh subprocess with ``--threads`` torch threads, so peak memory and
thread settings belong to that run alone; ours and theirs alternate, so load drift hits both.
``python -m recsys.benchmarks.ctr`` or ``recsys bench ctr``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.benchmarks.table import format_table

SHARED = Path(os.environ.get("RECSYS_SHARED_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))


def pipeline(dataset: str):  # noqa: ANN201
    """The fields of each task: ml-100k user/item/age bucket/gender/occupation/zip prefix/genres; ml-latest-small user/item/genres/tags."""
    from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature

    fields = [CategoricalFeature("user"), CategoricalFeature("item")]
    if dataset == "ml-100k":
        fields += [NumericFeature("age", boundaries=[18, 25, 35, 45, 50, 56]), CategoricalFeature("gender"),
                   CategoricalFeature("occupation"), CategoricalFeature("zip", prefix_length=3), MultiCategoricalFeature("genres")]
    else:
        fields += [MultiCategoricalFeature("genres"), MultiCategoricalFeature("tags", min_count=2)]
    return FeaturePipeline(fields, label_threshold=4.0)


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _data(args: dict[str, Any]):  # noqa: ANN202
    from recsys.data.ctr_batches import CTRBatches
    from recsys.data.load import load_dataset
    from recsys.data.splits import random_split

    data = load_dataset(args["dataset"], root=str(Path(args["root"]) / args["dataset"]))
    split = random_split(data, (0.8, 0.1, 0.1), seed=args["seed"])
    features = pipeline(args["dataset"]).fit(split.train)  # fit once: the model, batches and evaluator share it
    per_rank = args["batch_size"] // args.get("ddp", 1)  # data parallel: each rank takes its share of a global batch
    train = CTRBatches(split.train, features, batch_size=per_rank, seed=args["seed"])
    valid = CTRBatches(split.valid, features, batch_size=65536, shuffle=False)
    test = CTRBatches(split.test, features, batch_size=65536, shuffle=False)
    return features, train, valid, test


def _precision(args: dict[str, Any]) -> torch.autocast:
    """bf16 autocast around training (both implementations alike), or a disabled one for fp32."""
    device = "cuda" if args["device"] == "cuda" or (args["device"] == "auto" and torch.cuda.is_available()) else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16, enabled=args["precision"] == "bf16")


def run_ours(args: dict[str, Any]) -> dict[str, Any]:
    """Train one of our models (CombinedOptimizer: dense Adam + sparse RowWiseAdagrad) with :func:`recsys.pipeline.run_pipeline`.

    The split and batches are :func:`_data`'s; with early stopping it selects on the validation part, without it
    (``compare``) it trains on the 80% for every epoch: the split's validation part is then empty, so fitting on
    train + valid is fitting on train, with no validation.
    """
    from recsys.data.ctr_batches import CTRBatches
    from recsys.data.load import load_dataset
    from recsys.data.splits import Split, random_split
    from recsys.embeddings.optimizer import CombinedOptimizer
    from recsys.embeddings.sparse_optim import RowWiseAdagrad
    from recsys.evaluation.ctr import CTREvaluator
    from recsys.models.deepfm import DeepFM
    from recsys.models.fm import FM
    from recsys.models.logistic import LogisticRegression
    from recsys.pipeline import run_pipeline
    from recsys.training.trainer import Trainer

    data = load_dataset(args["dataset"], root=str(Path(args["root"]) / args["dataset"]))
    split = random_split(data, (0.8, 0.1, 0.1), seed=args["seed"])
    if not args["early_stopping"]:
        split = Split(split.train, split.train.with_frame(split.train.frame.clear(), assume_sorted=True), split.test)
    per_rank = args["batch_size"] // args.get("ddp", 1)  # data parallel: each rank takes its share of a global batch
    dim = args["embedding_dim"]
    model = {  # the pipeline fits pipeline(dataset) once on the training part and hands it to model, batches and evaluator
        "lr": LogisticRegression,
        "fm": partial(FM, embedding_dim=dim),
        "deepfm": partial(DeepFM, embedding_dim=dim, hidden_dims=args["hidden_dims"], sparse=args["sparse"]),
    }[args["model"]]
    optimizer = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=1e-3, fused=True),
                        sparse=partial(RowWiseAdagrad, lr=args["sparse_lr"], weight_decay=args["weight_decay"]))
    on_cpu = _precision(args).device == "cpu"  # on CPU the Trainer autocasts its steps itself (cpu_bf16)
    trainer = Trainer(epochs=args["epochs"], device=args["device"], monitor="auc", patience=2, progress=False, tensorboard=False,
                      cpu_bf16=on_cpu and args["precision"] == "bf16", cpu_keep_memory=args.get("keep_memory", True))
    with contextlib.nullcontext() if on_cpu else _precision(args):
        result = run_pipeline(data, model, split=split, batches=partial(CTRBatches, batch_size=per_rank, seed=args["seed"]),
                              optimizer=optimizer, features=pipeline(args["dataset"]), trainer=trainer, evaluator=CTREvaluator(),
                              seed=args["seed"], fit_on="train" if args["early_stopping"] else "train+valid")
    rows = split.train.num_interactions * len(result.epochs)  # all ranks' rows (one training row per interaction)
    return {"test": result.test, "train_seconds": result.train_seconds,
            "samples_per_s": rows / result.train_seconds, "epochs": len(result.epochs)}


def run_deepctr(args: dict[str, Any]) -> dict[str, Any]:
    """DeepCTR-Torch's DeepFM on our encoded ids (same vocabularies, OOV rows included); bags padded with 0."""
    import types

    sys.modules.setdefault("requests", types.ModuleType("requests"))  # only its PyPI version check imports it
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DeepFM as TheirDeepFM
    from sklearn.metrics import log_loss, roc_auc_score

    from recsys.embeddings.specs import embedding_fields

    torch.manual_seed(args["seed"])
    features, train, _, test = _data(args)
    fields = embedding_fields(features.field_specs(), args["embedding_dim"])

    def inputs(batches: Any) -> dict[str, np.ndarray]:
        enc, out = batches.encoded, {}
        for j, f in enumerate(f for f in fields if not f.pooled):
            out[f.name] = enc.ids[:, j].numpy()
        lengths, start = enc.bag_lengths, 0
        for k, f in enumerate(f for f in fields if f.pooled):  # build time: one padded matrix per bag field
            n, width = lengths.shape[1], max(int(lengths[k].max()), 1)
            padded = torch.zeros(n, width, dtype=torch.long)
            mask = torch.arange(width) < lengths[k].unsqueeze(1)
            count = int(lengths[k].sum())
            padded[mask] = enc.bag_values[start : start + count] + 1
            start += count
            out[f.name] = padded.numpy()
        return out

    x_train, x_test = inputs(train), inputs(test)
    columns = []
    for f in fields:
        if f.pooled:
            sparse = SparseFeat(f.name, vocabulary_size=f.num_rows + 1, embedding_dim=f.embedding_dim)
            columns.append(VarLenSparseFeat(sparse, maxlen=x_train[f.name].shape[1], combiner=f.pooling))
        else:
            columns.append(SparseFeat(f.name, vocabulary_size=f.num_rows, embedding_dim=f.embedding_dim))
    model = TheirDeepFM(columns, columns, task="binary", device=args["device"] if args["device"] != "auto" else "cpu",
                        dnn_hidden_units=tuple(args["hidden_dims"]), seed=args["seed"])
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    if args.get("tuned_malloc"):  # the glibc tuning our Trainer applies (cpu_keep_memory), at the same point
        from recsys.training.cpu_memory import keep_freed_memory

        keep_freed_memory()
    started = time.perf_counter()
    with _precision(args):
        model.fit(x_train, train.labels.numpy(), batch_size=args["batch_size"], epochs=args["epochs"], verbose=0)
    seconds = time.perf_counter() - started
    for f in fields:  # predict pads to the training width
        if f.pooled and x_test[f.name].shape[1] != x_train[f.name].shape[1]:
            width = x_train[f.name].shape[1]
            x_test[f.name] = np.pad(x_test[f.name], ((0, 0), (0, max(width - x_test[f.name].shape[1], 0))))[:, :width]
    probs = model.predict(x_test, batch_size=65536).reshape(-1)
    labels = test.labels.numpy()
    return {"test": {"auc": float(roc_auc_score(labels, probs)), "logloss": float(log_loss(labels, probs))},
            "train_seconds": seconds, "samples_per_s": len(train.labels) * args["epochs"] / seconds, "epochs": args["epochs"]}


def worker(spec: str) -> None:
    args = json.loads(spec)
    torch.set_num_threads(args["threads"])
    result = (run_deepctr if args["model"] == "deepctr" else run_ours)(args)
    if args.get("ddp", 1) > 1:
        from recsys.training.distributed import destroy_distributed

        destroy_distributed()
    result["peak_rss_mib"] = _peak_rss_mib()
    if torch.cuda.is_available() and args["device"] != "cpu":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: dict[str, Any]) -> dict[str, Any]:
    """One run in fresh processes: one, or ``args["ddp"]`` ranks (torchrun's environment, gloo on localhost).

    A data-parallel run reports rank 0's result with the peak RSS summed over the ranks.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"])}
    world = args.get("ddp", 1)
    if world > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world))
    command = [sys.executable, "-m", "recsys.benchmarks.ctr", "--worker", json.dumps(args)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)} if world > 1 else env)
             for r in range(world)]
    results = []
    for rank, proc in enumerate(procs):
        stdout, stderr = proc.communicate()
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            for other in procs:  # a failed rank leaves the others waiting on the group
                if other.poll() is None:
                    other.kill()
            where = f"rank {rank} of {world}, " if world > 1 else ""
            raise RuntimeError(f"{args['model']} ({args['precision']}, {where}exit code {proc.returncode}, "
                               f"result {'printed' if lines else 'missing'}) run failed:\n{stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return {**results[0], "peak_rss_mib": sum(r["peak_rss_mib"] for r in results)}


def _mean(results: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r["test"][key] if key in ("auc", "logloss") else r[key] for r in results]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench ctr", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", choices=["quality", "compare", "all"], default="all")
    parser.add_argument("--root", default=str(SHARED), help="folder holding ml-100k/ and ml-latest-small/")
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small", help="quality table datasets")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; tables report means")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--embedding-dim", type=int, default=4)
    parser.add_argument("--hidden-dims", default="256,128")
    parser.add_argument("--sparse-lr", type=float, default=0.05, help="RowWiseAdagrad lr for our tables")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 on touched table rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="quality table: bf16 = autocast")
    parser.add_argument("--bf16-row", action=argparse.BooleanOptionalAction, default=True,
                        help="compare table: add a labelled row with our DeepFM under bf16 autocast")
    parser.add_argument("--repeats", type=int, default=1, help="compare table: runs per variant and seed, best kept")
    parser.add_argument("--ddp", type=int, default=0, metavar="N",
                        help="compare table: add a row with ours (fp32) as N DDP processes x 1 thread (gloo)")
    parser.add_argument("--tuned-malloc", action="store_true",
                        help="theirs also gets our Trainer's glibc tuning (keep_freed_memory) before training")
    parser.add_argument("--keep-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="our Trainer's cpu_keep_memory (in-process glibc tuning; --no-keep-memory to ablate)")
    parser.add_argument("--dense-tables", action="store_true", help="our DeepFM with dense table gradients (Adam lr 1e-3)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.worker:
        worker(ns.worker)
        return 0
    seeds = [int(s) for s in ns.seeds.split(",")]
    base = {"root": ns.root, "epochs": ns.epochs, "batch_size": ns.batch_size, "embedding_dim": ns.embedding_dim,
            "hidden_dims": [int(h) for h in ns.hidden_dims.split(",")], "sparse_lr": ns.sparse_lr,
            "weight_decay": ns.weight_decay, "threads": ns.threads, "device": ns.device, "precision": ns.precision,
            "sparse": not ns.dense_tables, "tuned_malloc": ns.tuned_malloc, "keep_memory": ns.keep_memory}
    if ns.table in ("quality", "all"):
        rows = []
        for dataset in ns.datasets.split(","):
            for model in ("lr", "fm", "deepfm"):
                runs = [spawn({**base, "dataset": dataset, "model": model, "seed": s, "early_stopping": True,
                               "epochs": max(ns.epochs, 20)}) for s in seeds]
                rows.append({"dataset": dataset, "model": model, "test AUC": _mean(runs, "auc"),
                             "test log-loss": _mean(runs, "logloss"), "epochs run": _mean(runs, "epochs")})
        print(f"\nCTR quality (label rating >= 4; 80/10/10 random split; early stopping on valid AUC, patience 2; "
              f"embedding {ns.embedding_dim}; seeds {seeds})\n")
        print(format_table(rows))
    if ns.table in ("compare", "all"):
        if ns.ddp > 1 and ns.batch_size % ns.ddp:
            parser.error(f"--batch-size {ns.batch_size} must be a multiple of --ddp {ns.ddp}")
        variants: list[tuple[str, str, dict[str, Any]]] = [  # (row name, ratio label, run settings)
            ("recsys DeepFM (fp32)", "fp32", {"model": "deepfm", "precision": "fp32"}),
            ("DeepCTR-Torch 0.3.0 DeepFM (fp32)", "", {"model": "deepctr", "precision": "fp32"})]
        if ns.bf16_row:  # an option, labelled: ours under bf16 autocast, theirs stays fp32
            variants.append(("recsys DeepFM (bf16 autocast, option)", "bf16 autocast",
                             {"model": "deepfm", "precision": "bf16"}))
        if ns.ddp > 1:  # an option, labelled: the cores as data-parallel processes instead of threads
            variants.append((f"recsys DeepFM (fp32, {ns.ddp} processes x 1 thread, DDP gloo, option)",
                             f"fp32 DDP {ns.ddp}x1", {"model": "deepfm", "precision": "fp32", "ddp": ns.ddp, "threads": 1}))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
        load = os.getloadavg()[0]
        for s in seeds:
            for _ in range(ns.repeats):  # alternate, so load drift hits every variant
                for name, _, settings in variants:
                    runs[name].append(spawn({**base, "dataset": "ml-100k", "seed": s, "early_stopping": False, **settings}))
        rows = []
        for name, _, _ in variants:
            per_seed = [runs[name][i * ns.repeats : (i + 1) * ns.repeats] for i in range(len(seeds))]
            best = [max(r, key=lambda run: run["samples_per_s"]) for r in per_seed]  # best of the repeats
            rows.append({"implementation": name, "test AUC": _mean(best, "auc"), "test log-loss": _mean(best, "logloss"),
                         "train s": _mean(best, "train_seconds"), "samples/s": _mean(best, "samples_per_s"),
                         "peak RSS MiB": _mean(best, "peak_rss_mib")})
        theirs = rows[1]
        for row, (_, label, _) in [(r, v) for r, v in zip(rows, variants) if v[1]]:
            rows.append({"implementation": f"ratio {label} ours/theirs",
                         "test AUC": row["test AUC"] - theirs["test AUC"],
                         "test log-loss": row["test log-loss"] - theirs["test log-loss"],
                         "samples/s": row["samples/s"] / theirs["samples/s"],
                         "peak RSS MiB": row["peak RSS MiB"] / theirs["peak RSS MiB"]})
        print(f"\nDeepFM side by side on ml-100k CTR (80/10/10 split, test part; embedding {ns.embedding_dim}, DNN "
              f"{ns.hidden_dims}, batch {ns.batch_size}, {ns.epochs} epochs, {ns.threads} threads, device {ns.device}, "
              f"tables {'dense' if ns.dense_tables else 'sparse'}, "
              + f"ours: Trainer cpu_keep_memory={ns.keep_memory}, theirs: "
              + ("the same glibc tuning (keep_freed_memory before fit), " if ns.tuned_malloc else "default glibc malloc, ")
              + (f"DDP row: {ns.ddp} processes x 1 thread, {ns.batch_size // ns.ddp} rows per rank per step, "
                 "rank 0's training time, peak RSS summed over ranks; " if ns.ddp > 1 else "")
              + f"seeds {seeds}, best of {ns.repeats} runs each; training "
              f"time only; load average {load:.1f} -> {os.getloadavg()[0]:.1f}; ratio rows: AUC and log-loss "
              f"differences, throughput and memory ratios)\n")
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
