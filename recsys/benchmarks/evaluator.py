"""Full-ranking evaluation bench: :class:`RankingEvaluator` (HR + NDCG@k, ties exact) vs a plain ``torch.topk`` loop.

Both sides rank the same precomputed scores: ``score_fn(users)`` gathers rows of a ``(--bank, N)`` random score
bank (``users % bank``), a fresh ``(B, N)`` tensor per batch as a model's ``score_users`` returns; each user has
``--liked`` random excluded items and one held-out target. The topk loop masks the excluded items in place on
that tensor, takes ``topk(k)`` and counts hits (ties broken arbitrarily); ours is
``RankingEvaluator(ks=(k,), metrics=("hr", "ndcg"), coverage=False)`` at the batch size its memory budget picks
(both sides use that batch size).

- ``time``: both sides in this process, alternating, ``--repeats`` times: best, range, ratio ours / topk.
- ``memory``: each side once in its own subprocess: peak RSS, and its growth over the RSS after setup (data and
  score bank built, imports done); ratios ours / topk.
- ``million``: the memory run at ``--million`` (20k users x 1M items by default).
- ``sampled``: ours with ``num_negatives=100`` scoring only the candidates (``candidate_fn``) vs ours full ranking.

``python -m recsys.benchmarks.evaluator --sizes 20000x12000 20000x100000 200000x12000``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from recsys.evaluation.ranking import RankingEvaluator
from recsys.evaluation.table import format_table

warnings.filterwarnings("ignore", message="Sparse CSR tensor support")


def _size(text: str) -> tuple[int, int]:
    users, items = text.lower().split("x")
    return int(users), int(items)


def synthetic(users: int, items: int, liked: int, bank: int, seed: int = 0) -> dict[str, Any]:
    """A ``(bank, N)`` score bank, ``liked`` excluded items and one target per user (CSR, (U, N))."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(min(bank, users), items, generator=gen)
    rows = torch.arange(users).repeat_interleave(liked)
    keys = torch.unique(rows * items + torch.randint(0, items, (users * liked,), generator=gen))
    crow = torch.cat([keys.new_zeros(1), torch.bincount(keys // items, minlength=users).cumsum(0)])
    exclude = torch.sparse_csr_tensor(crow, keys % items, torch.ones(keys.numel()), (users, items), check_invariants=False)
    target = torch.randint(0, items, (users,), generator=gen)  # (U,)
    targets = torch.sparse_csr_tensor(torch.arange(users + 1), target, torch.ones(users), (users, items), check_invariants=False)
    return {"scores": scores, "exclude": exclude, "targets": targets, "target": target}


def _score_fn(scores: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda users: scores.index_select(0, users % scores.shape[0])  # (B, N), fresh


def topk_loop(data: dict[str, Any], k: int, batch_size: int) -> dict[str, float]:
    """HR@k and NDCG@k of the plain loop: mask in place, ``topk``, count hits."""
    score_fn, exclude, target = _score_fn(data["scores"]), data["exclude"], data["target"]
    crow, col = exclude.crow_indices(), exclude.col_indices()
    num_users = target.numel()
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2.0)
    hr = ndcg = 0.0
    for start in range(0, num_users, batch_size):
        users = torch.arange(start, min(start + batch_size, num_users))  # (B,)
        scores = score_fn(users)  # (B, N)
        lens = crow[users + 1] - crow[users]
        rows = torch.repeat_interleave(torch.arange(users.numel()), lens)
        scores[rows, col[crow[users[0]] : crow[users[-1] + 1]]] = float("-inf")
        hit = scores.topk(k, dim=1).indices == target[users].unsqueeze(1)  # (B, k)
        hr += float(hit.any(1).sum())
        ndcg += float((hit.double() * discount).sum())
    return {f"hr@{k}": hr / num_users, f"ndcg@{k}": ndcg / num_users}


def ours(data: dict[str, Any], k: int, batch_size: int | None, sampled: bool = False) -> dict[str, float]:
    scores = data["scores"]
    candidate_fn = (lambda users, items: scores[(users % scores.shape[0]).unsqueeze(1), items]) if sampled else None
    evaluator = RankingEvaluator(ks=(k,), metrics=("hr", "ndcg"), coverage=False, batch_size=batch_size,
                                 num_negatives=100 if sampled else None)
    return evaluator.evaluate(_score_fn(scores), data["exclude"], data["targets"], candidate_fn=candidate_fn)


def _rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak since exec (``VmHWM``; ``ru_maxrss`` would carry the
    parent's high-water mark across the exec), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(args: argparse.Namespace) -> None:
    """One side once, in a fresh process: prints seconds, peak RSS and the RSS after setup as JSON."""
    users, items = _size(args.worker_size)
    data = synthetic(users, items, args.liked, args.bank, args.seed)
    batch = RankingEvaluator().batch_size_for(items) if args.batch_size is None else args.batch_size
    setup = _rss_mib()
    start = time.perf_counter()
    if args.worker == "topk":
        out = topk_loop(data, args.k, batch)
    else:
        out = ours(data, args.k, batch, sampled=args.worker == "sampled")
    seconds = time.perf_counter() - start
    peak = _rss_mib("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "setup_rss_mib": setup, "batch": batch, **out}))


def _measure(side: str, size: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "recsys.benchmarks.evaluator", "--worker", side, "--worker-size", size,
               "--liked", str(args.liked), "--bank", str(args.bank), "--k", str(args.k), "--seed", str(args.seed),
               "--threads", str(args.threads)]
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} worker at {size} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[list[float], Any]]:
    """Each run ``repeats`` times, alternating sides; seconds per repeat and the last output."""
    out: dict[str, tuple[list[float], Any]] = {name: ([], None) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            result = run()
            out[name] = (out[name][0] + [time.perf_counter() - start], result)
    return out


def _span(times: list[float]) -> str:
    return f"{min(times):.2f}-{max(times):.2f}"


def bench_time(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for size in args.sizes:
        users, items = _size(size)
        data = synthetic(users, items, args.liked, args.bank, args.seed)
        batch = RankingEvaluator().batch_size_for(items) if args.batch_size is None else args.batch_size
        timed = _timed({"ours": lambda: ours(data, args.k, batch), "topk": lambda: topk_loop(data, args.k, batch)},
                       args.repeats)
        (our_t, our_out), (top_t, top_out) = timed["ours"], timed["topk"]
        paired = sorted(o / t for o, t in zip(our_t, top_t))
        diff = max(abs(our_out[key] - top_out[key]) for key in top_out)
        rows.append({"users x items": size, "batch": batch, "topk loop s": min(top_t), "topk range": _span(top_t),
                     "ours s": min(our_t), "ours range": _span(our_t), "ours / topk": min(our_t) / min(top_t),
                     "paired range": f"{paired[0]:.2f}-{paired[-1]:.2f}", f"hr@{args.k}": our_out[f"hr@{args.k}"],
                     "|ours - topk|": diff})
        del data
    return rows


def bench_memory(sizes: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        top, mine = _measure("topk", size, args), _measure("ours", size, args)
        grow_top, grow_ours = top["peak_rss_mib"] - top["setup_rss_mib"], mine["peak_rss_mib"] - mine["setup_rss_mib"]
        rows.append({"users x items": size, "batch": mine["batch"], "topk peak MiB": round(top["peak_rss_mib"]),
                     "ours peak MiB": round(mine["peak_rss_mib"]), "peak ratio": mine["peak_rss_mib"] / top["peak_rss_mib"],
                     "topk growth MiB": round(grow_top), "ours growth MiB": round(grow_ours),
                     "growth ratio": grow_ours / max(grow_top, 1.0), "ours s": mine["seconds"], "topk s": top["seconds"]})
    return rows


def bench_sampled(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for size in args.sampled_sizes:
        users, items = _size(size)
        data = synthetic(users, items, args.liked, args.bank, args.seed)
        timed = _timed({"sampled": lambda: ours(data, args.k, args.batch_size, sampled=True),
                        "full": lambda: ours(data, args.k, args.batch_size)}, args.repeats)
        (s_t, _), (f_t, _) = timed["sampled"], timed["full"]
        rows.append({"users x items": size, "sampled-100 s": min(s_t), "sampled range": _span(s_t),
                     "full s": min(f_t), "full range": _span(f_t), "sampled / full": min(s_t) / min(f_t)})
        del data
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys bench evaluator", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["time", "memory", "million", "sampled"],
                        choices=["time", "memory", "million", "sampled"])
    parser.add_argument("--sizes", nargs="+", default=["20000x12000", "20000x100000", "200000x12000"],
                        help="users x items of the time and memory parts")
    parser.add_argument("--million", nargs="+", default=["20000x1000000"], help="sizes of the million-item memory part")
    parser.add_argument("--sampled-sizes", nargs="+", default=["20000x100000"])
    parser.add_argument("--liked", type=int, default=20, help="excluded (seen) items per user")
    parser.add_argument("--bank", type=int, default=256, help="rows of the precomputed score bank")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="both sides (default: what ours picks)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["ours", "topk", "sampled"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-size", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        _worker(args)
        return 0
    from recsys.benchmarks.grid import machine_facts

    facts = machine_facts(args.threads)
    print(f"{facts['cpu']}, {facts['cores']} cores, {args.threads} threads, load {facts['load_1min']:.1f} at start; "
          f"{args.liked} excluded items and 1 target per user, k={args.k}, best of {args.repeats}")
    if "time" in args.parts:
        print(f"\n## time: RankingEvaluator (hr, ndcg @{args.k}, ties exact) vs a torch.topk loop, same scores\n")
        print(format_table(bench_time(args), floatfmt=".3f"))
    if "memory" in args.parts:
        print("\n## memory: peak RSS of each side in its own process (growth = peak - RSS after setup)\n")
        print(format_table(bench_memory(args.sizes, args), floatfmt=".2f"))
    if "million" in args.parts:
        print("\n## million items: peak RSS at the evaluator's default memory budget (1 GiB)\n")
        print(format_table(bench_memory(args.million, args), floatfmt=".2f"))
    if "sampled" in args.parts:
        print("\n## sampled-100 (candidates only) vs full ranking, both ours\n")
        print(format_table(bench_sampled(args), floatfmt=".3f"))
    load = os.getloadavg()[0]
    print(f"\nload {load:.1f} at the end" + (" (noisy: more runnable threads than cores)" if load > math.ceil(os.cpu_count() or 1) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
