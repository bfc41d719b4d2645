"""Benchmark: SASRec and GRU4Rec training speed and evaluation time on Amazon Beauty, ours and RecBole's side by side.

``speed`` (default): per architecture (``--archs``: SASRec, GRU4Rec) and loss, seconds per training batch over ``--batches`` batches after one
warm-up batch, extrapolated to a full epoch (both libraries see every training target once per
epoch: ours trains every position of each user's sequence, RecBole every prefix), training targets/s,
peak memory, and the time to rank all items for all users (full ranking, history masked).
RecBole runs when ``recbole`` is installed (the optional ``bench`` extra).

``quality``: trains Pop, BPR-MF, SASRec (BCE, 1 negative), SASRec (full CE) and BERT4Rec on
Beauty with leave-one-out, early stopping on validation NDCG@10, and reports test HR/NDCG@{5,10,20}
under full ranking and, labelled, with 100 sampled negatives (the SASRec paper's protocol).

Run with ``python -m recsys.benchmarks.sequential --root .../amazon-beauty`` or ``recsys bench sequential``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from recsys.benchmarks.table import format_table

logger = logging.getLogger(__name__)

ARCHS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}  # --archs value -> the model's name (RecBole's too)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(root: str) -> Any:
    from recsys.data.load import load_dataset
    from recsys.data.splits import leave_one_out

    data = load_dataset("amazon-beauty", root=root)
    return data, leave_one_out(data)


def _time_batches(step, batches, num: int) -> float:  # type: ignore[no-untyped-def]
    """Mean seconds per batch over ``num`` batches after one warm-up batch."""
    iterator = iter(batches)
    step(next(iterator))
    seconds, done = 0.0, 0
    for batch in iterator:
        start = time.perf_counter()
        step(batch)
        seconds += time.perf_counter() - start
        done += 1
        if done == num:
            break
    return seconds / max(done, 1)


def ours(split: Any, arch: str, loss: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from recsys.data.sequence_batches import NextItemBatches
    from recsys.evaluation.ranking import RankingEvaluator
    from recsys.models.gru4rec import GRU4Rec
    from recsys.models.sasrec import SASRec

    train = split.train
    if arch == "sasrec":
        model = SASRec(train.num_items, max_len=args.max_len, embedding_dim=args.dim, num_layers=2, num_heads=1,
                       dropout=0.5, loss=loss).to(device)
    else:  # conf/model/gru4rec.yaml's architecture (RecBole's GRU4Rec defaults: hidden 128, one layer, dropout 0.3)
        model = GRU4Rec(train.num_items, max_len=args.max_len, embedding_dim=args.dim, hidden_size=128, num_layers=1,
                        dropout=0.3, loss=loss).to(device)
    negatives = 0 if loss == "ce" else 1
    batches = NextItemBatches(train, max_len=args.max_len, batch_size=args.batch_size, num_negatives=negatives,
                              group_by_length=True, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = device.type == "cuda"
    if amp:
        torch.cuda.reset_peak_memory_stats()

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss_value = model.loss(batch)
        loss_value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if amp:
            torch.cuda.synchronize()

    per_batch = _time_batches(step, batches, args.batches)
    targets = int((batches.sequences[:, 1:] != 0).sum())  # (input, target) pairs per epoch
    start = time.perf_counter()
    RankingEvaluator(ks=(10,), metrics=("ndcg",), batch_size=1024).evaluate_model(model, train, split.valid)
    eval_seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**20 if amp else _peak_rss_mib()
    return {"model": ARCHS[arch], "library": "recsys", "loss": loss, "device": device.type + (" bf16" if amp else ""),
            "epoch_s": per_batch * len(batches), "batches/epoch": len(batches),
            "targets/s": targets / (per_batch * len(batches)), "peak_mib": memory, "eval_all_users_s": eval_seconds}


def recbole(data: Any, arch: str, loss: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """RecBole 1.2.1's SASRec or GRU4Rec and dataloader at the same settings, in our own timing loop (inside the
    workarounds RecBole needs on numpy 2 / pandas 3, :func:`recsys.benchmarks.peers_recbole.recbole_runtime`)."""
    from recsys.benchmarks.peers_recbole import recbole_runtime

    with recbole_runtime(device):
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.sequential_recommender import GRU4Rec as RecBoleGRU4Rec, SASRec as RecBoleSASRec

        folder = Path(tempfile.mkdtemp(prefix="recbole_beauty_"))
        (folder / "beauty").mkdir()
        frame = data.frame.select("user", "item", "timestamp")
        with open(folder / "beauty" / "beauty.inter", "w") as file:
            file.write("user_id:token\titem_id:token\ttimestamp:float\n")
            frame.write_csv(file, separator="\t", include_header=False)
        architecture = ({"hidden_size": args.dim, "inner_size": args.dim, "n_layers": 2, "n_heads": 1,
                         "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5} if arch == "sasrec" else
                        {"embedding_size": args.dim, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3})
        config = Config(model=ARCHS[arch], dataset="beauty", config_dict={
            "data_path": str(folder), "loss_type": "CE" if loss == "ce" else "BPR", "train_neg_sample_args": None
            if loss == "ce" else {"distribution": "uniform", "sample_num": 1}, "MAX_ITEM_LIST_LENGTH": args.max_len,
            **architecture, "train_batch_size": args.batch_size, "device": str(device), "use_gpu": device.type == "cuda",
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}, "show_progress": False,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "state": "WARNING", "seed": 0,
            "reproducibility": False, "worker": 0,
        })
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        model = (RecBoleSASRec if arch == "sasrec" else RecBoleGRU4Rec)(config, train_data._dataset).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(interaction: Any) -> None:
            loss_value = model.calculate_loss(interaction.to(device))
            loss_value.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()

        per_batch = _time_batches(step, train_data, args.batches)
        num_batches = len(train_data)
        targets = len(train_data._dataset)
    return {"model": ARCHS[arch], "library": "RecBole 1.2.1", "loss": loss, "device": device.type,
            "epoch_s": per_batch * num_batches, "batches/epoch": num_batches, "targets/s": targets / (per_batch * num_batches),
            "peak_mib": _peak_rss_mib(), "eval_all_users_s": None}


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per library, architecture, loss, device and repeat (``--repeats``: ours then RecBole's, back to back);
    our rows carry ``speedup_vs_recbole``, RecBole's epoch time over ours in the same repeat."""
    data, split = _load(args.root)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for arch in args.archs:
            for loss in args.losses:
                for repeat in range(args.repeats):
                    mine = {"repeat": repeat, **ours(split, arch, loss, args, device)}
                    rows.append(mine)
                    try:
                        peer = {"repeat": repeat, **recbole(data, arch, loss, args, device)}
                    except ImportError:
                        logger.warning("recbole is not installed: pip install recbole (the bench extra)")
                        continue
                    except Exception as error:  # noqa: BLE001 - a peer failing must not hide our numbers
                        logger.warning("RecBole failed on %s/%s/%s: %r", device, arch, loss, error)
                        continue
                    rows.append(peer)
                    mine["speedup_vs_recbole"] = peer["epoch_s"] / mine["epoch_s"]
    return rows


def speed_summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per architecture, loss and device: the best epoch-time ratio over the repeats and its range, as README claims
    (:func:`recsys.benchmarks.readme.record`)."""
    from recsys.benchmarks.readme import claim

    groups: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        if "speedup_vs_recbole" in row:
            groups.setdefault((row["model"], row["loss"], row["device"]), []).append(row["speedup_vs_recbole"])
    loss_names = {"ce": "full cross-entropy", "bce": "BCE, 1 negative"}
    return [claim(f"{model} ({loss_names[loss]}) training epoch vs RecBole 1.2.1's, {device}, amazon-beauty (dim "
                  f"{args.dim}, max_len {args.max_len}, batch {args.batch_size}; each library's own epoch: ours every "
                  "position of each user's latest window, RecBole every prefix)", ratios,
                  f"recsys bench sequential speed --archs {arch_key(model)} --losses {loss} --repeats {len(ratios)}"
                  + (f" --threads {args.threads}" if args.threads else ""), args.threads)
            for (model, loss, device), ratios in groups.items()]


def arch_key(model: str) -> str:
    """The ``--archs`` value of a model name (``"GRU4Rec"`` -> ``"gru4rec"``)."""
    return next(key for key, name in ARCHS.items() if name == model)


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each variant through :func:`recsys.pipeline.run_pipeline` (seed 0, early stopping on validation NDCG@10)."""
    from recsys.data.batches import PairwiseBatches
    from recsys.data.sequence_batches import ClozeBatches, NextItemBatches
    from recsys.evaluation.ranking import RankingEvaluator
    from recsys.models.bert4rec import BERT4Rec
    from recsys.models.bpr import BPRMF
    from recsys.models.popularity import Popularity
    from recsys.models.sasrec import SASRec
    from recsys.pipeline import run_pipeline
    from recsys.training.trainer import Trainer

    data, split = _load(args.root)
    L = args.max_len
    adam = partial(torch.optim.Adam, lr=1e-3)
    variants = {  # (model factory, batches factory); the pipeline fills num_users / num_items and data=train
        "Pop": (Popularity, None),
        "BPR-MF": (BPRMF, partial(PairwiseBatches, batch_size=1024)),
        "SASRec (BCE, 1 neg.)": (partial(SASRec, max_len=L, embedding_dim=args.dim, dropout=0.5, loss="bce"),
                                 partial(NextItemBatches, max_len=L, batch_size=128, num_negatives=1, exclude_positives=True,
                                         group_by_length=True)),
        "SASRec (full CE)": (partial(SASRec, max_len=L, embedding_dim=args.dim, dropout=0.5, loss="ce"),
                             partial(NextItemBatches, max_len=L, batch_size=128, num_negatives=0, group_by_length=True)),
        "BERT4Rec": (partial(BERT4Rec, max_len=L, embedding_dim=args.dim, dropout=0.2),
                     partial(ClozeBatches, max_len=L, batch_size=128, mask_prob=0.2, group_by_length=True)),
    }
    full = RankingEvaluator(ks=(5, 10, 20), metrics=("hr", "ndcg"), coverage=False)
    sampled = RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"), num_negatives=100)
    trainer = Trainer(epochs=args.epochs, device=args.device, eval_every=args.eval_every, patience=args.patience,
                      progress=False, tensorboard=False)
    rows = []
    for name, (model, batches) in variants.items():
        if args.models and name not in args.models:
            continue
        result = run_pipeline(data, model, split=split, batches=batches, optimizer=adam if batches else None,
                              trainer=trainer, evaluator=full, seed=0, fit_on="train")
        row = {"model": name, "best_epoch": result.best_epoch, "train_s": result.train_seconds}
        row.update({k: v for k, v in result.test.items() if k != "num_users"})
        row.update({k: v for k, v in sampled.evaluate_model(result.model, result.history, split.test).items() if k != "num_users"})
        rows.append(row)
        logger.info("%s", row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench sequential", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("speed", "quality"), default="speed")
    parser.add_argument("--root", default="../shared/datasets/amazon-beauty", help="folder holding Beauty.txt")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per variant (speed)")
    parser.add_argument("--losses", nargs="+", default=["ce", "bce"], choices=("ce", "bce"))
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS), help="architectures (speed)")
    parser.add_argument("--repeats", type=int, default=1, help="side-by-side repeats of each pair (speed)")
    parser.add_argument("--record", default=None, help="speed: merge the ratios into this file (docs/results/speed.json)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--epochs", type=int, default=200, help="max epochs (quality)")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="*", default=None, help="subset of the quality table's rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = speed(args) if args.mode == "speed" else quality(args)
    print(format_table(rows, floatfmt=".4g" if args.mode == "speed" else ".4f"))
    if args.mode == "speed":
        summary = speed_summary(rows, args)
        if summary:
            print(format_table([{"what": r["claim"], "best": r["best"], "range": f"{r['low']:.2f}x-{r['high']:.2f}x",
                                 "repeats": r["repeats"]} for r in summary], floatfmt=".2f"))
        if args.record and summary:
            from recsys.benchmarks.readme import record

            print(f"recorded in {record(args.record, summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
