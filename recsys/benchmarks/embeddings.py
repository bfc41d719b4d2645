"""Benchmark: fused sparse ``EmbeddingCollection`` vs one ``nn.Embedding`` per field with dense Adam.

Same initial weights, same Zipf-distributed batches. Each (dim, variant) runs in a fresh subprocess so
that peak memory (CPU: ``VmHWM`` of the process, reset after setup; CUDA: ``max_memory_allocated``)
belongs to that configuration alone. Run with ``python -m recsys.benchmarks.embeddings`` or
``recsys bench embeddings``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)
VARIANTS = ("naive_adam", "fused_rowwise_adagrad", "fused_sparse_adam")


def field_sizes(num_fields: int, total_rows: int) -> list[int]:
    """Criteo-like skewed vocabulary sizes (geometric from 1 to 10^4 relative), summing to ``total_rows``."""
    raw = np.geomspace(1.0, 1e4, num_fields)
    sizes = np.maximum((raw / raw.sum() * total_rows).astype(np.int64), 4)
    sizes[-1] += total_rows - sizes.sum()
    return [int(s) for s in sizes]


def zipf_batches(sizes: list[int], batch: int, num_batches: int, exponent: float, seed: int) -> Tensor:
    """``(num_batches, B, F)`` ids: per field, Zipf ranks (truncated at the vocabulary) through a random permutation."""
    gen = torch.Generator().manual_seed(seed)
    columns = []
    for size in sizes:  # data generation, once per field
        cdf = torch.arange(1, size + 1, dtype=torch.float64).pow(-exponent).cumsum(0)
        cdf /= cdf[-1].clone()
        ranks = torch.searchsorted(cdf, torch.rand(num_batches * batch, generator=gen, dtype=torch.float64)).clamp_max(size - 1)
        columns.append(torch.randperm(size, generator=gen)[ranks])
    return torch.stack(columns, dim=1).view(num_batches, batch, len(sizes))


def _memory_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class NaiveEmbeddings(nn.Module):
    """The common baseline: one ``nn.Embedding`` per field, looked up one by one.

    >>> NaiveEmbeddings([torch.zeros(5, 4), torch.zeros(3, 4)])(torch.tensor([[4, 2]])).shape
    torch.Size([1, 2, 4])
    """

    def __init__(self, weights: list[Tensor]) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding.from_pretrained(w.clone(), freeze=False) for w in weights)

    def forward(self, ids: Tensor) -> Tensor:
        return torch.stack([table(ids[:, f]) for f, table in enumerate(self.tables)], dim=1)  # (B, F, D)


def _worker(args: argparse.Namespace) -> dict:
    from recsys.embeddings import CombinedOptimizer, EmbeddingCollection, EmbeddingField, RowWiseAdagrad, SparseAdam, state_bytes

    device = torch.device(args.device)
    sizes = field_sizes(args.fields, args.rows)
    batches = zipf_batches(sizes, args.batch, args.warmup + args.steps, args.zipf, args.seed).to(device)
    target = torch.randn(args.batch, args.fields, args.dim, generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    rss0 = _memory_kb("VmRSS")
    fields = [EmbeddingField(f"f{i}", n, args.dim) for i, n in enumerate(sizes)]
    fused = EmbeddingCollection(fields, sparse=True, generator=torch.Generator().manual_seed(args.seed))
    if args.variant == "naive_adam":
        model = NaiveEmbeddings([fused.field_weight(f.name).detach() for f in fields]).to(device)
        del fused
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        model = fused.to(device)
        sparse = partial(RowWiseAdagrad, lr=0.01) if args.variant == "fused_rowwise_adagrad" else partial(SparseAdam, lr=1e-3)
        optimizer = CombinedOptimizer(model.parameters(), dense=partial(torch.optim.Adam, lr=1e-3), sparse=sparse)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset = _reset_peak()
    times = []
    for step, ids in enumerate(batches):
        sync()
        start = time.perf_counter()
        loss = (model(ids) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    result = {
        "dim": args.dim,
        "variant": args.variant,
        "step_ms": 1e3 * float(np.mean(times)),
        "median_ms": 1e3 * float(np.median(times)),
        "peak_mb": (torch.cuda.max_memory_allocated() if cuda else 1024 * (_memory_kb("VmHWM") - (rss0 if reset else 0))) / 2**20,
        "opt_state_mb": state_bytes(optimizer) / 2**20,
        "params_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
    }
    if cuda:  # lookup bandwidth: forward only, bytes of rows read
        with torch.no_grad():
            for ids in batches[: args.warmup]:
                model(ids)
            sync()
            start = time.perf_counter()
            for ids in batches:
                model(ids)
            sync()
        seconds = (time.perf_counter() - start) / len(batches)
        result["lookup_gbs"] = args.batch * args.fields * args.dim * 4 / seconds / 1e9
        props = torch.cuda.get_device_properties(device)
        clock, bus = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
        result["hbm_gbs"] = 2 * clock * 1e3 * bus / 8 / 1e9 if clock and bus else None
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys bench embeddings", description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=26)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows over all fields")
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--zipf", type=float, default=1.05, help="Zipf exponent of the ids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every (dim, variant) in its own process and print one markdown table with the ratios to naive."""
    from recsys.benchmarks.table import format_table

    args = _parser().parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        args.variant = args.worker
        print(json.dumps(_worker(args)))
        return 0
    rows = []
    for dim in args.dims:
        base = None
        for variant in args.variants:
            command = [sys.executable, "-m", "recsys.benchmarks.embeddings", "--worker", variant, "--dim", str(dim)]
            for key in ("fields", "rows", "batch", "steps", "warmup", "zipf", "seed", "device"):
                command += [f"--{key}", str(getattr(args, key))]
            logger.info("running %s", " ".join(command))
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
            row = json.loads(done.stdout.strip().splitlines()[-1])
            base = base or (row if variant == "naive_adam" else None)
            if base is not None:
                row["speedup"] = base["step_ms"] / row["step_ms"]
                row["state_ratio"] = row["opt_state_mb"] / base["opt_state_mb"] if base["opt_state_mb"] else None
                row["peak_ratio"] = row["peak_mb"] / base["peak_mb"] if base["peak_mb"] else None
            rows.append(row)
    columns = ["dim", "variant", "step_ms", "median_ms", "speedup", "peak_mb", "peak_ratio", "opt_state_mb", "state_ratio", "params_mb"]
    if args.device.startswith("cuda"):
        columns += ["lookup_gbs", "hbm_gbs"]
    print(f"{args.fields} fields, {args.rows:,} rows, batch {args.batch}, Zipf {args.zipf}, device {args.device}, "
          f"{torch.get_num_threads()} threads, mean of {args.steps} steps after {args.warmup} warm-up")
    print(format_table(rows, columns, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
