"""``recsys bench din``: our DIN vs DeepCTR-Torch 0.3.0's DIN on MovieLens CTR, side by side.

Both read the same rows: ml-100k, click = rating >= 4, a seeded random 80/10/10 split (trained on the 80%, scored on
the test 10%), fields user and item plus the behaviour history (each row's user's ``--max-len`` most recent items
rated strictly before it, from our fitted :class:`~recsys.data.features.SequenceFeature`; DeepCTR gets it padded
with 0 and a length column, items shifted by one for its padding row). Same embedding dim, DNN and attention sizes,
Dice in the attention and ReLU in the DNN, batch size, epochs, fp32, ``--threads`` torch threads. Optimizers are each
library's own: ours the CTR default (dense Adam 1e-3 + sparse RowWiseAdagrad on the fused table), DeepCTR Adam 1e-3
on everything. Training samples/s = training rows x epochs / training seconds (no evaluation inside).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.benchmarks.table import format_table

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def pipeline(max_len: int):  # noqa: ANN201
    from recsys.data.features import CategoricalFeature, FeaturePipeline, SequenceFeature

    return FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item"),
                            SequenceFeature("history", source="item", max_len=max_len)], label_threshold=4.0)


def _split(args: argparse.Namespace):  # noqa: ANN202
    from recsys.data.load import load_dataset
    from recsys.data.splits import Split, random_split

    data = load_dataset("ml-100k", root=str(Path(args.root) / "ml-100k"))
    split = random_split(data, (0.8, 0.1, 0.1), seed=args.seed)
    empty = split.train.with_frame(split.train.frame.clear(), assume_sorted=True)
    return data, Split(split.train, empty, split.test)  # fixed epochs, no validation: train on the 80%


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from recsys.data.ctr_batches import CTRBatches
    from recsys.embeddings.optimizer import CombinedOptimizer
    from recsys.embeddings.sparse_optim import RowWiseAdagrad
    from recsys.evaluation.ctr import CTREvaluator
    from recsys.models.din import DIN
    from recsys.pipeline import run_pipeline
    from recsys.training.trainer import Trainer

    data, split = _split(args)
    model = partial(DIN, embedding_dim=args.embedding_dim, hidden_dims=args.hidden_dims, attention_dims=args.attention_dims,
                    activation="relu", attention_activation="dice")
    optimizer = partial(CombinedOptimizer, dense=partial(torch.optim.Adam, lr=1e-3, fused=True),
                        sparse=partial(RowWiseAdagrad, lr=args.sparse_lr))
    trainer = Trainer(epochs=args.epochs, device="cpu", monitor="auc", patience=None, progress=False, tensorboard=False)
    result = run_pipeline(data, model, split=split, batches=partial(CTRBatches, batch_size=args.batch_size, seed=args.seed),
                          optimizer=optimizer, features=pipeline(args.max_len), trainer=trainer, evaluator=CTREvaluator(),
                          seed=args.seed, fit_on="train+valid")
    rows = split.train.num_interactions * len(result.epochs)
    return {"auc": result.test["auc"], "logloss": result.test["logloss"], "seconds": result.train_seconds,
            "samples_per_s": rows / result.train_seconds}


def padded(values: torch.Tensor, lengths: torch.Tensor, width: int) -> np.ndarray:
    """Ragged rows as ``(n, width)`` int64 with 0 after each row's end (values shifted by one: 0 is padding)."""
    out = torch.zeros(len(lengths), width, dtype=torch.long)
    row = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    slot = torch.arange(len(values)) - (torch.cumsum(lengths, 0) - lengths)[row]
    out[row, slot] = values + 1
    return out.numpy()


def deepctr_inputs(features: Any, data: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """DeepCTR's input dict for encoded rows: user, item + 1, hist_item (padded, + 1) and seq_length."""
    encoded = features.transform(data)
    max_len = features.sequence_features[0].max_len
    lengths = encoded.bag_lengths[0]
    x = {"user": encoded.ids[:, 0].numpy(), "item": encoded.ids[:, 1].numpy() + 1,
         "hist_item": padded(encoded.bag_values, lengths, max_len), "seq_length": lengths.numpy()}
    return x, features.labels(data).numpy()


def deepctr_columns(features: Any, dim: int) -> list[Any]:
    """DeepCTR feature columns of our fitted pipeline: the history shares the item table (``embedding_name``)."""
    from recsys.benchmarks.peers import _deepctr

    inputs = _deepctr().inputs
    user, item = (features.features_[i].num_embeddings + 1 for i in (0, 1))  # + the OOV row
    history = features.sequence_features[0]
    return [inputs.SparseFeat("user", user, embedding_dim=dim), inputs.SparseFeat("item", item + 1, embedding_dim=dim),
            inputs.VarLenSparseFeat(inputs.SparseFeat("hist_item", item + 1, embedding_dim=dim, embedding_name="item"),
                                    maxlen=history.max_len, length_name="seq_length")]


def run_deepctr(args: argparse.Namespace) -> dict[str, Any]:
    from recsys.benchmarks.peers import _deepctr
    from recsys.evaluation.ctr import CTREvaluator

    _deepctr()
    from deepctr_torch.models import DIN as TheirDIN

    _, split = _split(args)
    features = pipeline(args.max_len).fit(split.train)
    x, y = deepctr_inputs(features, split.train)
    x_test, y_test = deepctr_inputs(features, split.test)
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        peer = TheirDIN(deepctr_columns(features, args.embedding_dim), ["item"], dnn_hidden_units=tuple(args.hidden_dims),
                        att_hidden_size=tuple(args.attention_dims), dnn_activation="relu", att_activation="Dice",
                        seed=args.seed, device="cpu")
        peer.compile(torch.optim.Adam(peer.parameters(), lr=1e-3), "binary_crossentropy")
        start = time.perf_counter()
        peer.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        p = np.clip(peer.predict(x_test, batch_size=65536).reshape(-1), 1e-7, 1 - 1e-7)
    test = CTREvaluator.metrics(torch.from_numpy(np.log(p / (1 - p))).float(), torch.from_numpy(y_test).float())
    return {"auc": test["auc"], "logloss": test["logloss"], "seconds": seconds, "samples_per_s": len(y) * args.epochs / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench din", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED), help="folder holding ml-100k/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--attention-dims", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--sparse-lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one side-by-side pair per seed")
    parser.add_argument("--seed", type=int, dest="seeds", action="store", help=argparse.SUPPRESS)  # older spelling: one seed
    parser.add_argument("--only", choices=["ours", "deepctr"], default=None)
    parser.add_argument("--record", default=None, help="merge the speed ratio (best and range over the seeds) into this "
                        "speed file (docs/results/speed.json)")
    args = parser.parse_args(argv)
    if isinstance(args.seeds, int):
        args.seeds = [args.seeds]
    torch.set_num_threads(args.threads)
    runs = {"ours": run_ours, "deepctr": run_deepctr}
    pairs = []
    for seed in args.seeds:
        args.seed = seed
        results = {name: run(args) for name, run in runs.items() if args.only in (None, name)}
        rows = [{"seed": seed, "model": name, "AUC": f"{r['auc']:.4f}", "log loss": f"{r['logloss']:.4f}",
                 "train samples/s": f"{r['samples_per_s']:,.0f}", "train s": f"{r['seconds']:.1f}"} for name, r in results.items()]
        if len(results) == 2:
            ours, theirs = results["ours"], results["deepctr"]
            pairs.append((seed, ours, theirs))
            rows.append({"seed": seed, "model": "ours - deepctr (speed: ours / deepctr)", "AUC": f"{ours['auc'] - theirs['auc']:+.4f}",
                         "log loss": f"{ours['logloss'] - theirs['logloss']:+.4f}",
                         "train samples/s": f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}x"})
        print(f"DIN on ml-100k CTR (user, item, history max_len {args.max_len}): embedding {args.embedding_dim}, DNN "
              f"{args.hidden_dims}, attention {args.attention_dims}, batch {args.batch_size}, {args.epochs} epochs, fp32, "
              f"{args.threads} threads, seed {seed}")
        print(format_table(rows, ["seed", "model", "AUC", "log loss", "train samples/s", "train s"]), flush=True)
    if args.record and pairs:
        from recsys.benchmarks.readme import record

        print(f"recorded in {record(args.record, [speed_claim(pairs, args)])}")
    return 0


def speed_claim(pairs: list[tuple[int, dict[str, Any], dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """The README row of ``(seed, ours, deepctr)`` pairs: training samples/s ratio per seed, AUC of both beside it."""
    from recsys.benchmarks.readme import claim

    seeds = " ".join(str(seed) for seed, _, _ in pairs)
    aucs = "; ".join(f"{o['auc']:.4f} vs {t['auc']:.4f}" for _, o, t in pairs)
    return claim(f"DIN vs DeepCTR-Torch 0.3.0's DIN, training samples/s (ml-100k CTR, user + item + {args.max_len}-item "
                 f"history, embedding {args.embedding_dim}, DNN {'-'.join(map(str, args.hidden_dims))}, {args.epochs} epochs; "
                 "a repeat is one seed, ours and DeepCTR back to back)",
                 [o["samples_per_s"] / t["samples_per_s"] for _, o, t in pairs],
                 f"recsys bench din --root ../shared/datasets --seeds {seeds}", args.threads,
                 detail=f"test AUC ours vs DeepCTR: {aucs} (seeds {seeds})")


if __name__ == "__main__":
    raise SystemExit(main())
