"""Benchmark: our item2vec vs gensim's ``Word2Vec`` as item2vec, same corpus, same settings, one run.

Per dataset: leave-one-out split. Ours is ``Item2Vec`` fitted by the SGNS engine through the one
recipe (:func:`recsys.pipeline.run_pipeline`, ``fit_on="train+valid"``); gensim's is its ``Word2Vec``.
Both train skip-gram on every user's train + validation items in time order (vector_size 64,
window 5, negative 5, sample 1e-3, min_count 1, 10 epochs, the same number of threads; ``--hs``:
hierarchical softmax instead, ``hs=1, negative=0`` unless ``--negative`` is given; ``--sg 0``: CBOW) and score
each user's test item by cosine to the user's last history item, ranked against all items
(history masked): HR@10 / NDCG@10 as in BASELINES.md. Each (system, seed) trains in a fresh
subprocess so its peak memory is its own (VmHWM from the end of data loading; it includes the
interpreter, torch and the data). words/s = corpus tokens x epochs / training-loop seconds (raw
tokens, before subsampling, as gensim's progress counts them). Means over seeds; ratios are ours /
gensim. Run ``python -m recsys.benchmarks.item2vec`` or ``recsys bench item2vec``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recsys.benchmarks.table import format_table
from recsys.runtime import resolve_device

log = logging.getLogger(__name__)
DATASETS = {"ml-latest-small": None, "ml-100k": "ml-100k/u.data", "amazon-beauty": "amazon-beauty/Beauty.txt", "lee": "gensim"}


def _text_worker(args: argparse.Namespace) -> dict:
    """Words: the Lee corpus shipped with gensim; quality = Spearman correlation on WordSim-353 (gensim's evaluator)."""
    from gensim.models import KeyedVectors as GensimKeyedVectors
    from gensim.models import Word2Vec as GensimWord2Vec
    from gensim.test.utils import datapath
    from gensim.utils import simple_preprocess

    lines = Path(datapath("lee_background.cor")).read_text(encoding="latin-1").splitlines()
    corpus = [simple_preprocess(line) for line in lines]
    settings = dict(vector_size=args.vector_size, window=args.window, negative=args.negative, hs=args.hs, sg=args.sg, min_count=2, sample=1e-3,
                    epochs=args.epochs, seed=args.seed)
    if args.system == "gensim":
        started = time.perf_counter()
        wv = GensimWord2Vec(corpus, workers=args.workers, **settings).wv
        seconds = time.perf_counter() - started
    else:
        from recsys.estimators.word2vec import Word2Vec

        model = Word2Vec(workers=args.workers, batch_size=args.batch_size, device=args.device, **settings).fit(corpus)
        seconds = model.train_seconds_
        wv = GensimKeyedVectors(args.vector_size)
        wv.add_vectors(model.wv.index_to_key, model.wv.vectors)
    pearson, spearman, oov = wv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    words = sum(len(s) for s in corpus) * args.epochs
    return {"seconds": seconds, "words_per_s": words / seconds, "peak_mb": _memory_kb("VmHWM") / 1024, "wordsim353 spearman": float(spearman[0])}


QUALITY = ("HR@10", "NDCG@10", "wordsim353 spearman")


def _memory_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _load(name: str, root: Path):
    from recsys.data.load import load_dataset
    from recsys.data.splits import leave_one_out

    source = DATASETS.get(name)
    if source is None:
        data = load_dataset(name)
    elif name.startswith("ml-"):  # a MovieLens folder under root (never downloaded here)
        data = load_dataset(name, root=root, download=False)
    else:
        data = load_dataset(str(root / source))
    return data, leave_one_out(data)


class _SeededSGNS:
    """The SGNS engine run from the bench's integer seed (``fit_seeded``), as ``Word2Vec(seed=...)`` runs it,
    so the numbers stay the facade's; keeps the run (its ``seconds``: the training loop alone, what words/s divides)."""

    def __init__(self, engine: Any, seed: int) -> None:
        self.engine, self.seed, self.run = engine, seed, None

    def fit(self, model: Any, train: Any, *, device: torch.device, generator: torch.Generator, progress: bool = True) -> None:
        self.run = self.engine.fit_seeded(model, train, device=device, seed=self.seed, progress=progress)


def _reset_peak() -> bool:
    """Restart VmHWM from now (Linux); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _worker(args: argparse.Namespace) -> dict:
    from recsys.evaluation.ranking import RankingEvaluator

    if args.dataset == "lee":
        return _text_worker(args)
    data, split = _load(args.dataset, Path(args.root))
    history, test = split.train.concat(split.valid), split.test
    evaluator = RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"))
    words = history.num_interactions * args.epochs
    if args.system == "ours":
        metrics, seconds, peak_mb = _fit_ours(args, data, split, evaluator)
    else:
        metrics, seconds, peak_mb = _fit_gensim(args, data, history, test, evaluator)
    return {"seconds": seconds, "words_per_s": words / seconds, "peak_mb": peak_mb, "HR@10": metrics["hr@10"], "NDCG@10": metrics["ndcg@10"]}


def _fit_ours(args: argparse.Namespace, data, split, evaluator) -> tuple[dict, float, float]:
    """Item2Vec through :func:`recsys.pipeline.run_pipeline` on train + valid (last_n 1: cosine to the last history item)."""
    from recsys.models.item2vec import Item2Vec
    from recsys.pipeline import run_pipeline
    from recsys.training import Trainer
    from recsys.training.sgns import SGNSEngine

    model = partial(Item2Vec, vector_size=args.vector_size, window=args.window, negative=args.negative, hs=args.hs, sg=args.sg, min_count=1,
                    sample=1e-3, epochs=args.epochs, batch_size=args.batch_size, last_n=1)
    engine = _SeededSGNS(SGNSEngine(workers=args.workers), args.seed)
    trainer = Trainer(device=args.device, progress=False, patience=None, tensorboard=False)
    reset = _reset_peak()
    result = run_pipeline(data, model, engine=engine, split=split, fit_on="train+valid", evaluator=evaluator, trainer=trainer, seed=args.seed)
    return result.test, engine.run.seconds, _memory_kb("VmHWM") / 1024 if reset else float("nan")


def _fit_gensim(args: argparse.Namespace, data, history, test, evaluator) -> tuple[dict, float, float]:
    """gensim's Word2Vec on each user's history items in time order, scored as Item2Vec(last_n=1) scores."""
    from gensim.models import Word2Vec as GensimWord2Vec

    offsets, items = history.sequences()
    lengths = offsets.diff()
    # str tokens: gensim 4.4 stores hs codes by key, and an int key is read as an index (codes land on the wrong words)
    corpus = [[str(i) for i in s.tolist()] for s in torch.split(items, lengths[lengths > 0].tolist())]
    reset = _reset_peak()
    started = time.perf_counter()
    model = GensimWord2Vec(corpus, workers=args.workers, vector_size=args.vector_size, window=args.window, negative=args.negative, hs=args.hs,
                           sg=args.sg, min_count=1, sample=1e-3, epochs=args.epochs, seed=args.seed)
    seconds = time.perf_counter() - started
    peak_mb = _memory_kb("VmHWM") / 1024 if reset else float("nan")
    table = torch.zeros(data.num_items, args.vector_size)
    known = torch.zeros(data.num_items, dtype=torch.bool)
    rows = torch.as_tensor(np.asarray([int(key) for key in model.wv.index_to_key], dtype=np.int64))
    table[rows], known[rows] = torch.as_tensor(model.wv.vectors), True
    unit = F.normalize(table, dim=1)  # (N, D)
    last = history.padded_sequences(1)[:, 0] - 1  # (U,), -1 = no history

    def score(users: torch.Tensor) -> torch.Tensor:
        scores = unit[last[users].clamp_min(0)] @ unit.T  # (B, N)
        return scores.masked_fill(~known, -torch.inf)

    return evaluator.evaluate(score, history.user_item_matrix(), test.user_item_matrix()), seconds, peak_mb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys bench item2vec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="ml-latest-small, ml-100k, amazon-beauty and/or lee")
    parser.add_argument("--root", default=os.environ.get("RECSYS_SHARED_DATASETS", str(Path(__file__).resolve().parents[2].parent / "shared" / "datasets")), help="folder holding ml-100k/ and amazon-beauty/Beauty.txt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2, help="threads, for both systems")
    parser.add_argument("--vector-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=None, help="noise words per positive (default 5; 0 with --hs)")
    parser.add_argument("--hs", action="store_const", const=1, default=0, help="hierarchical softmax (hs=1) for both systems")
    parser.add_argument("--sg", type=int, choices=[0, 1], default=1, help="1 skip-gram, 0 CBOW (mean of the contexts)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256, help="ours: centers per SGD step")
    parser.add_argument("--device", default="auto", help="ours: cpu, cuda or auto")
    parser.add_argument("--systems", nargs="+", default=["ours", "gensim"], choices=["ours", "gensim"])
    parser.add_argument("--record", default=None, help="merge each corpus' words/s ratio (best and range over the seeds, "
                        "each seed ours and gensim back to back) into this speed file (docs/results/speed.json)")
    parser.add_argument("--worker", choices=["ours", "gensim"], dest="system_worker", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.negative is None:
        args.negative = 0 if args.hs else 5
    if args.system_worker:
        args.system = args.system_worker
        print(json.dumps(_worker(args)))
        return 0
    systems = list(args.systems)
    if "gensim" in systems:
        try:
            import gensim  # noqa: F401
        except ImportError:
            print("gensim is not installed (pip install 'recsys[bench]'): running ours only", file=sys.stderr)
            systems.remove("gensim")
    rows, claims = [], []
    for dataset in args.datasets:
        if dataset == "lee" and "gensim" not in systems:
            print("skipping lee: the text corpus and WordSim-353 come with gensim", file=sys.stderr)
            continue
        if DATASETS.get(dataset) not in (None, "gensim") and not (Path(args.root) / DATASETS[dataset]).is_file():
            print(f"skipping {dataset}: {Path(args.root) / DATASETS[dataset]} not found (--root)", file=sys.stderr)
            continue
        results: dict[str, list[dict]] = {s: [] for s in systems}
        for seed in args.seeds:
            for system in systems if seed % 2 else systems[::-1]:  # alternate the order against load drift
                command = [sys.executable, "-m", "recsys.benchmarks.item2vec", "--worker", system, "--dataset", dataset, "--seed", str(seed), "--root", args.root,
                           "--workers", str(args.workers), "--vector-size", str(args.vector_size), "--window", str(args.window), "--negative", str(args.negative),
                           "--sg", str(args.sg), *(["--hs"] if args.hs else []),
                           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", args.device]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                results[system].append(json.loads(done.stdout.strip().splitlines()[-1]))
        means = {s: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for s, rs in results.items()}
        for system, mean in means.items():
            device = str(resolve_device(args.device)) if system == "ours" else "cpu"
            rows.append({"data": dataset, "system": system, "device": device, "threads": args.workers, "train s": mean["seconds"], "words/s": round(mean["words_per_s"]),
                         "peak MiB": round(mean["peak_mb"]), **{k: mean[k] for k in QUALITY if k in mean}})
        if len(means) == 2:
            claims.append(speed_claim(dataset, results["ours"], results["gensim"], args))
            ours, peer = means["ours"], means["gensim"]
            rows.append({"data": dataset, "system": "ours / gensim", "train s": ours["seconds"] / peer["seconds"], "words/s": round(ours["words_per_s"] / peer["words_per_s"], 2),
                         "peak MiB": round(ours["peak_mb"] / peer["peak_mb"], 2), **{k: ours[k] / peer[k] for k in QUALITY if k in ours}})
    objective = f"{'hierarchical softmax (hs=1), ' if args.hs else ''}negative {args.negative}"
    print(f"item2vec: {'skip-gram' if args.sg else 'CBOW'}, dim {args.vector_size}, window {args.window}, {objective}, {args.epochs} epochs, "
          f"mean of seeds {args.seeds}; items: full ranking, leave-one-out, score = cosine to the last history item; "
          f"lee: gensim's Lee corpus (min_count 2), Spearman on WordSim-353; words/s = raw tokens x epochs / train seconds")
    print(format_table(rows))
    if args.record and claims:
        from recsys.benchmarks.readme import record

        print(f"recorded in {record(args.record, claims)}")
    return 0


def speed_claim(dataset: str, ours: list[dict], gensim: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    """The README row of one corpus: words/s ours / gensim per seed (a repeat), HR@10 and NDCG@10 ratios beside it."""
    from recsys.benchmarks.readme import claim

    def ratios(key: str) -> str:
        values = sorted(o[key] / g[key] for o, g in zip(ours, gensim, strict=True))
        return f"{values[0]:.2f}x-{values[-1]:.2f}x"

    objective = "hierarchical softmax (gensim hs=1, negative=0)" if args.hs and not args.negative else (
        f"hierarchical softmax and negative {args.negative}" if args.hs else f"negative sampling ({args.negative} noise items)")
    flags = (" --hs" if args.hs else "") + ("" if args.negative == (0 if args.hs else 5) else f" --negative {args.negative}")
    seeds = " ".join(map(str, args.seeds))
    quality = "; ".join(f"{k} {ratios(k)} gensim's" for k in QUALITY if k in ours[0] and k in gensim[0])
    return claim(f"item2vec vs gensim Word2Vec, words/s ({dataset}, {'skip-gram' if args.sg else 'CBOW'}, {objective}, dim "
                 f"{args.vector_size}, window {args.window}, {args.epochs} epochs; a repeat is one seed, ours and gensim back to back)",
                 [o["words_per_s"] / g["words_per_s"] for o, g in zip(ours, gensim, strict=True)],
                 f"recsys bench item2vec{flags} --datasets {dataset} --seeds {seeds} --root ../shared/datasets",
                 args.workers, detail=quality or None)


if __name__ == "__main__":
    raise SystemExit(main())
