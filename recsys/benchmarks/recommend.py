"""Recommendation-serving bench: batched top-N for every user (ours vs ``implicit``) and faiss ANN vs exact top-k.

(a) ``recommend``: ``implicit``'s batched ``AlternatingLeastSquares.recommend`` and ours
(:class:`recsys.estimators.implicit_api.AlternatingLeastSquares`: matmul per item tile + the compiled selection
of :mod:`recsys.evaluation.topk`) on the SAME factors
(implicit's, loaded into ours), every user, ``N`` items, already-liked items filtered. On ``amazon-beauty``
(factors fitted by implicit) and on a synthetic catalogue (random factors, ``--liked`` random liked items per
user). Columns: users/s of each side (best of ``--repeats``, range in brackets), the ratio, and the fraction of
users whose top-N ids are identical (in order; and as sets) and whose top-N scores are (equal scores may swap ids).
(b) ``ann``: a :class:`recsys.embeddings.ann.FaissIndex` over ``--ann-items`` vectors (i.i.d. Gaussian, the worst
case, and clustered), tuned to ``--ann-target`` recall on held-out queries, vs exact torch top-k: recall@k against
the exact answer and queries/s of both.

Both sides run in this process with ``--threads`` threads (torch, BLAS via threadpoolctl, implicit, faiss).

``python -m recsys.benchmarks.recommend --root /work/shared/datasets --users 1000000``
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys.evaluation import topk
from recsys.evaluation.table import format_table

BEAUTY_ALS = {"factors": 64, "alpha": 20.0, "regularization": 0.01, "iterations": 15}  # as recsys.benchmarks.cf


def _timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return times, out


def _rate(count: int, times: list[float]) -> tuple[float, str]:
    rates = [count / t for t in times]
    return round(max(rates)), f"{min(rates):,.0f}-{max(rates):,.0f}"


def synthetic(num_users: int, num_items: int, factors: int, liked: int, seed: int = 0):
    """Random factors ``(U, D)``, ``(N, D)`` and a CSR with ``liked`` random items per user."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    users = (rng.standard_normal((num_users, factors), dtype=np.float32) * 0.1).astype(np.float32)
    items = (rng.standard_normal((num_items, factors), dtype=np.float32) * 0.1).astype(np.float32)
    cols = rng.integers(0, num_items, size=num_users * liked)
    rows = np.repeat(np.arange(num_users), liked)
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(num_users, num_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return users, items, matrix


def _beauty(root: str | None, threads: int):
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares as ImplicitALS

    from recsys.data.load import load_dataset

    data = load_dataset("amazon-beauty", root=root)
    matrix = data.user_item_matrix()
    user_items = sp.csr_matrix((matrix.values().numpy(), matrix.col_indices().numpy(), matrix.crow_indices().numpy()),
                               shape=tuple(matrix.shape))
    model = ImplicitALS(**BEAUTY_ALS, random_state=0, num_threads=threads)
    model.fit(user_items, show_progress=False)
    return model.user_factors, model.item_factors, user_items


def bench_recommend(name: str, user_factors: np.ndarray, item_factors: np.ndarray, user_items: Any, args: argparse.Namespace) -> dict:
    """Both sides' batched recommend for every user on the same factors."""
    from implicit.cpu.als import AlternatingLeastSquares as ImplicitALS

    from recsys.estimators.implicit_api import AlternatingLeastSquares

    theirs = ImplicitALS(factors=user_factors.shape[1], num_threads=args.threads)
    theirs.user_factors, theirs.item_factors = user_factors, item_factors
    ours = AlternatingLeastSquares(factors=user_factors.shape[1], batch_size=args.batch_size, device=args.device)
    ours.user_factors, ours.item_factors = user_factors, item_factors
    users = np.arange(user_factors.shape[0])
    topk.load()  # our compiled selection, from numba's cache: outside the timing, as implicit's at import
    their_times, (their_ids, their_scores) = _timed(lambda: theirs.recommend(users, user_items, N=args.N), args.repeats)
    our_times, (our_ids, our_scores) = _timed(lambda: ours.recommend(users, user_items, N=args.N), args.repeats)
    (their_best, their_range), (our_best, our_range) = _rate(len(users), their_times), _rate(len(users), our_times)
    paired = sorted(t / o for t, o in zip(their_times, our_times))  # repeat i of each side, run back to back
    same = float((their_ids == our_ids).all(1).mean())
    same_set = float((np.sort(their_ids, 1) == np.sort(our_ids, 1)).all(1).mean())
    same_scores = float(np.isclose(their_scores, our_scores, rtol=1e-5, atol=1e-6).all(1).mean())  # ties may swap ids, not scores
    return {"data": name, "users": len(users), "items": item_factors.shape[0], "N": args.N,
            "implicit users/s": their_best, "implicit range": their_range, "ours users/s": our_best, "ours range": our_range,
            "ours / implicit": our_best / their_best, "paired range": f"{paired[0]:.2f}-{paired[-1]:.2f}",
            "same top-N": same, "same set": same_set, "same scores": same_scores, "_paired": paired}


def ann_vectors(kind: str, num: int, dim: int, queries: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V, D)`` vectors and ``(Q, D)`` queries. ``gaussian``: i.i.d. N(0, 1), the worst case of every ANN index (no
    structure to exploit); ``clustered``: 1,000 centres and unit noise at 0.5 of their spread, queries from the same
    mixture (as trained item tables and user vectors cluster by taste)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(num, dim, generator=generator), torch.randn(queries, dim, generator=generator)
    centres = torch.randn(1000, dim, generator=generator)

    def draw(n: int) -> torch.Tensor:
        return centres[torch.randint(0, len(centres), (n,), generator=generator)] + 0.5 * torch.randn(n, dim, generator=generator)

    return draw(num), draw(queries)


def bench_ann(args: argparse.Namespace) -> list[dict]:
    """recall@k and queries/s of tuned faiss indexes vs exact torch top-k, per vector distribution.

    Each index is tuned (:meth:`FaissIndex.tune`) to the smallest ``nprobe`` / ``ef_search`` reaching
    ``--ann-target`` recall on a separate set of tuning queries, then timed on the measured queries."""
    from recsys.embeddings.ann import FaissIndex, import_faiss

    import_faiss().omp_set_num_threads(args.threads)
    k, rows = args.ann_k, []
    for data in args.ann_data:
        vectors, queries = ann_vectors(data, args.ann_items, args.ann_dim, 2 * args.ann_queries, args.seed)
        tuning, queries = queries[: args.ann_queries], queries[args.ann_queries :]

        def exact() -> torch.Tensor:
            return torch.cat([(queries[s : s + 256] @ vectors.T).topk(k, dim=1).indices for s in range(0, len(queries), 256)])

        exact_times, truth = _timed(exact, args.repeats)
        exact_best, exact_range = _rate(len(queries), exact_times)
        rows.append({"vectors": data, "method": "exact torch topk", "build s": None, "recall@k": 1.0,
                     "queries/s": exact_best, "range": exact_range, "vs exact": 1.0})
        for kind in args.ann_kinds:
            start = time.perf_counter()
            index = FaissIndex(vectors, metric="ip", kind=kind)
            build = time.perf_counter() - start
            tuned = index.tune(vectors, tuning, k, target_recall=args.ann_target)
            times, (_, found) = _timed(lambda: index.search(queries, k), args.repeats)
            hits = (found.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().sum(1) / k  # (Q,)
            best, spread = _rate(len(queries), times)
            setting = ", ".join(f"{key}={value}" for key, value in index.params.items())
            paired = sorted(e / t for e, t in zip(exact_times, times))
            rows.append({"vectors": data, "method": f"faiss {kind} ({setting})", "build s": build,
                         "recall@k": float(hits.mean()), "queries/s": best, "range": spread, "vs exact": best / exact_best,
                         "tuning recall": tuned["recall"], "_paired": paired})
        del vectors, queries
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys bench recommend", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["beauty", "synthetic", "ann"], choices=["beauty", "synthetic", "ann"])
    parser.add_argument("--root", default=None, help="datasets root holding amazon-beauty/Beauty.txt")
    parser.add_argument("--users", type=int, default=1_000_000, help="synthetic users (fewer for quick runs)")
    parser.add_argument("--items", type=int, default=100_000, help="synthetic items")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--liked", type=int, default=10, help="random liked items per synthetic user")
    parser.add_argument("--N", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1024, help="users per scored block (ours)")
    parser.add_argument("--ann-items", type=int, default=1_000_000)
    parser.add_argument("--ann-dim", type=int, default=64)
    parser.add_argument("--ann-queries", type=int, default=2000)
    parser.add_argument("--ann-k", type=int, default=100)
    parser.add_argument("--ann-kinds", nargs="+", default=["ivf"], choices=["hnsw", "ivf", "flat"],
                        help="index kinds (hnsw builds slowly on 2 cores: minutes at 1M vectors)")
    parser.add_argument("--ann-data", nargs="+", default=["gaussian", "clustered"], choices=["gaussian", "clustered"])
    parser.add_argument("--ann-target", type=float, default=0.95, help="recall@k each index is tuned to reach")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="ours: cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default=None, help="merge the ratios into this speed file (docs/results/speed.json)")
    return parser


def _record(path: str, recommend_rows: list[dict], ann_rows: list[dict], args: argparse.Namespace) -> None:
    """The ratios as README rows (recsys.benchmarks.readme)."""
    from recsys.benchmarks.readme import claim, record

    rows = [claim(f"batch recommend for every user vs implicit's recommend, same ALS factors ({r['data']}: {r['users']:,} users x "
                  f"{r['items']:,} items, N={r['N']}, top-N identical for {r['same top-N']:.3f} of users)", r["_paired"],
                  f"recsys bench recommend --parts {'beauty' if r['data'] == 'amazon-beauty' else 'synthetic'}", args.threads)
            for r in recommend_rows]
    rows += [claim(f"ANN {r['method']} vs exact torch top-k ({args.ann_items:,} x {args.ann_dim} {r['vectors']} vectors, "
                   f"recall@{args.ann_k} {r['recall@k']:.3f}): queries/s", r["_paired"], "recsys bench recommend --parts ann",
                   args.threads) for r in ann_rows if "_paired" in r]
    record(path, rows)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*OpenBLAS.*|.*threadpoolctl.*")
    with threadpool_limits(args.threads):
        rows, ann_rows = [], []
        if "beauty" in args.parts:
            rows.append(bench_recommend("amazon-beauty", *_beauty(args.root, args.threads), args))
        if "synthetic" in args.parts:
            rows.append(bench_recommend("synthetic", *synthetic(args.users, args.items, args.factors, args.liked, args.seed), args))
        if rows:
            print(f"\n## recommend for every user: N={args.N}, {args.threads} threads, best of {args.repeats}\n")
            print(format_table([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]))
        if "ann" in args.parts:
            print(f"\n## ANN: {args.ann_items:,} x {args.ann_dim} vectors, {args.ann_queries:,} queries (and as many to tune on), "
                  f"k={args.ann_k}, tuned to recall {args.ann_target}, {args.threads} threads, best of {args.repeats}\n")
            ann_rows = bench_ann(args)
            print(format_table([{k: v for k, v in r.items() if not k.startswith("_")} for r in ann_rows]))
        if args.record:
            _record(args.record, rows, ann_rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
