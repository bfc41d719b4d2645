"""Fine-tuning bench: predict a movie's genres (multi-label) from its title and tags on ml-latest-small.

Texts are ``title | tag, tag, ...`` (no genres: they are the labels); the labels are the genres of
movies.csv less "(no genres listed)" (movies left without a genre are dropped). Movies are split
80/10/10 (seeded). From all-MiniLM-L6-v2, compared on the test movies:

- frozen MiniLM + linear head: :func:`~recsys.training.finetune.fine_tune` with ``freeze_encoder=True``
  (mean-pooled embeddings, the head trained with the same recipe, ``--probe-epochs`` epochs);
- frozen MiniLM + scikit-learn ``LogisticRegression`` one-vs-rest on the same embeddings (C chosen on
  validation);
- full fine-tuning of the whole encoder and the head (``--epochs``).

Micro-F1 at threshold 0.5 and at one threshold tuned on validation micro-F1, micro/macro ROC AUC, and the
wall seconds of training (the frozen rows include the one encoding of every movie they share) and of
predicting the test movies (for logistic regression: the linear head's, since encoding is all of it).

``recsys bench finetune [--epochs 2] [--seed 0] [--max-length 48] [--batch-size 32] [--threads N]``
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import torch

from recsys.benchmarks.table import format_table

log = logging.getLogger(__name__)

NO_GENRE = "(no genres listed)"
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def genre_task(data) -> tuple[list[str], torch.Tensor, list[str]]:
    """Texts (title + tags), the 0/1 genre matrix ``(N, G)`` and the genre names, for movies with a genre."""
    import polars as pl

    from recsys.data.item_text import item_texts

    features = data.item_features
    texts = item_texts(features, data.num_items, fields=("title", "tags"))
    genres = sorted({g for row in features["genres"].to_list() for g in (row or []) if g != NO_GENRE})
    frame = (features.select("item", "genres").explode("genres").filter(pl.col("genres").is_in(genres))
             .with_columns(pl.col("genres").replace_strict(genres, list(range(len(genres))), return_dtype=pl.Int64)))
    labels = torch.zeros(data.num_items, len(genres))
    labels[torch.tensor(frame["item"].to_numpy()), torch.tensor(frame["genres"].to_numpy())] = 1.0
    keep = (labels.sum(1) > 0).nonzero().squeeze(1)
    return [texts[i] for i in keep.tolist()], labels[keep], genres


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded 80/10/10 row split."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    return order[:a], order[a:b], order[b:]


def _micro_f1(probs: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = probs >= threshold
    tp = (pred & truth).sum()
    return float(2 * tp / max(pred.sum() + truth.sum(), 1))


def scores(test: np.ndarray, test_truth: np.ndarray, valid: np.ndarray, valid_truth: np.ndarray) -> dict[str, str]:
    """The table's metrics: micro-F1 at 0.5 and at the validation-tuned threshold, micro / macro ROC AUC."""
    from sklearn.metrics import roc_auc_score

    test_truth, valid_truth = test_truth.astype(bool), valid_truth.astype(bool)
    tuned = max(THRESHOLDS, key=lambda t: _micro_f1(valid, valid_truth, t))
    both = (test_truth.any(0)) & (~test_truth).any(0)  # macro AUC over genres with both classes in test
    return {
        "micro-F1@0.5": f"{_micro_f1(test, test_truth, 0.5):.4f}",
        "micro-F1@tuned (t)": f"{_micro_f1(test, test_truth, tuned):.4f} ({tuned:.2f})",
        "micro AUC": f"{roc_auc_score(test_truth, test, average='micro'):.4f}",
        "macro AUC": f"{roc_auc_score(test_truth[:, both], test[:, both], average='macro'):.4f}",
    }


def _logistic(train_x, train_y, valid_x, valid_y, test_x, seed: int, grid=(0.1, 1.0, 10.0)) -> tuple[np.ndarray, np.ndarray, float]:
    """One-vs-rest logistic regression; C from ``grid`` by validation micro AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.multiclass import OneVsRestClassifier

    best = None
    for c in grid:
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed)).fit(train_x, train_y)
        valid = model.predict_proba(valid_x)
        auc = roc_auc_score(valid_y, valid, average="micro")
        if best is None or auc > best[0]:
            best = (auc, c, valid, model.predict_proba(test_x))
    return best[3], best[2], best[1]


def run(encoder, tokenizer, texts: list[str], labels: torch.Tensor, args) -> list[dict]:
    """The table's rows for ``encoder`` (copied per row: fine-tuning changes it) on ``texts`` / ``labels``."""
    import copy

    from recsys.text.heads import TextClassifier, pooled_features, predict
    from recsys.training.finetune import fine_tune

    train, valid, test = split(len(texts), args.seed)
    pick = lambda rows: [texts[i] for i in rows]  # noqa: E731
    common = dict(tokenizer=tokenizer, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
                  device=args.device, progress=args.progress, threads=args.threads)
    y = {name: labels[torch.from_numpy(rows)] for name, rows in (("train", train), ("valid", valid), ("test", test))}
    rows = []

    def row(name, seconds, test_probs, valid_probs, predict_s, fit=None):
        out = {"method": name, **scores(test_probs, y["test"].numpy(), valid_probs, y["valid"].numpy()),
               "train s": f"{seconds:.0f}", "predict s": f"{predict_s:.1f}"}
        if fit is not None:
            out["valid loss by epoch"] = " ".join(f"{r['valid_loss']:.3f}" for r in fit.history[-4:])
        rows.append(out)
        log.info("%s", out)

    start = time.perf_counter()  # one encoding of every movie, shared by both frozen rows
    frozen = TextClassifier(copy.deepcopy(encoder), labels.shape[1], freeze_encoder=True).to(args.device)
    features = pooled_features(frozen, tokenizer, texts, 2 * args.batch_size, max_length=args.max_length).cpu()
    encode_s = time.perf_counter() - start
    f = {name: features[torch.from_numpy(r)] for name, r in (("train", train), ("valid", valid), ("test", test))}
    start = time.perf_counter()
    clf, fit = fine_tune(pick(train), y["train"], encoder=frozen.encoder, freeze_encoder=True, epochs=args.probe_epochs,
                         head_lr=args.probe_head_lr, valid=(pick(valid), y["valid"]), features=(f["train"], f["valid"]),
                         **common)
    probe_s = time.perf_counter() - start
    start = time.perf_counter()
    test_probs = predict(clf, tokenizer, pick(test), 2 * args.batch_size, device=args.device).numpy()
    frozen_predict_s = time.perf_counter() - start
    with torch.inference_mode():
        valid_probs = clf.outputs(clf.head_logits(f["valid"].to(clf.head.weight.device))).cpu().numpy()
    row(f"frozen + linear head ({args.probe_epochs} ep, head lr {args.probe_head_lr:g})", encode_s + probe_s,
        test_probs, valid_probs, frozen_predict_s, fit)

    start = time.perf_counter()
    test_probs, valid_probs, c = _logistic(f["train"].numpy(), y["train"].numpy(), f["valid"].numpy(), y["valid"].numpy(),
                                           f["test"].numpy(), args.seed, args.logreg_c)
    row(f"frozen + LogisticRegression OvR (C={c:g})", encode_s + time.perf_counter() - start, test_probs, valid_probs,
        frozen_predict_s)  # predicting is encoding the test texts, as for the linear head

    start = time.perf_counter()
    clf, fit = fine_tune(pick(train), y["train"], encoder=copy.deepcopy(encoder), epochs=args.epochs, lr=args.lr,
                         head_lr=args.head_lr, valid=(pick(valid), y["valid"]), **common)
    tune_s = time.perf_counter() - start
    start = time.perf_counter()
    test_probs = predict(clf, tokenizer, pick(test), 2 * args.batch_size, device=args.device).numpy()
    predict_s = time.perf_counter() - start
    valid_probs = predict(clf, tokenizer, pick(valid), 2 * args.batch_size, device=args.device).numpy()
    row(f"full fine-tuning ({args.epochs} ep, lr {args.lr:g}, head lr {args.head_lr:g})", tune_s, test_probs, valid_probs,
        predict_s, fit)
    return rows


def _tiny(texts: list[str], seed: int):
    """A random 1-layer BertEncoder and a tokenizer trained on ``texts`` (the smoke test's stand-in for MiniLM)."""
    from recsys.text.encoder import BertEncoder
    from recsys.text.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.train(texts, vocab_size=1000, max_length=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = BertEncoder(tokenizer.vocab_size, dim=32, num_layers=1, num_heads=2, max_len=64)
    return encoder, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder holding ml-latest-small (default: embedded copy)")
    parser.add_argument("--epochs", type=int, default=2, help="full fine-tuning epochs")
    parser.add_argument("--probe-epochs", type=int, default=20, help="epochs of the linear head on frozen features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="encoder learning rate (fine-tuning)")
    parser.add_argument("--head-lr", type=float, default=1e-2, help="head learning rate (fine-tuning)")
    parser.add_argument("--probe-head-lr", type=float, default=1e-2, help="head learning rate on frozen features")
    parser.add_argument("--logreg-c", type=lambda v: tuple(float(c) for c in v.split(",")), default=(0.1, 1.0, 10.0),
                        help="LogisticRegression C values tried on validation (comma-separated)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test: random tiny encoder
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # smoke test: first N movies
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from recsys.data.load import load_dataset

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset("ml-latest-small", root=args.data_root)
    texts, labels, genres = genre_task(data)
    if args.limit is not None:
        texts, labels = texts[: args.limit], labels[: args.limit]
    if args.tiny:
        encoder, tokenizer = _tiny(texts, args.seed)
    else:
        from recsys.text.checkpoint import load_pretrained

        encoder, tokenizer = load_pretrained(device="cpu")
    start = time.perf_counter()
    rows = run(encoder, tokenizer, texts, labels, args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    name = "tiny random BertEncoder (smoke)" if args.tiny else "all-MiniLM-L6-v2"
    print(f"## Genre prediction from title + tags, ml-latest-small: {len(texts)} movies, {len(genres)} genres, "
          f"80/10/10 split (seed {args.seed}), {name}, max_length {args.max_length}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {time.perf_counter() - start:.0f} s (1-min load {load:.1f})\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
