"""Reports from a benchmark results store: summary tables, significance tests, plots, Markdown and HTML.

The store (written by the grid runner)::

    STORE/results.parquet      one row per cell (finished or failed): dataset, model, peer, seed, status, error,
                               train_seconds, peak_rss_mib, run_dir, ..., test/<metric> and valid/<metric> floats
    STORE/cells/<cell_id>/     the cell's run directory: metrics.csv, metrics.json, per_user_test.parquet

Rows of ``kind`` trial (``recsys tune``'s search trials: validation metrics only) are left out of reports; its
reruns with test metrics (``<space> (tuned)``, ``<space> (defaults)``) are ordinary rows.

Metrics are named as the evaluator names them (``hr@10``); a bare name means the test split (``test/hr@10``),
``valid/hr@10`` names the validation column. Without named metrics a report shows the :data:`DEFAULT_METRICS` the
store holds (ranking ``hr@10`` / ``ndcg@10``, CTR ``auc`` / ``logloss``, rating ``rmse`` / ``mae``). Paired tests
need per-user values: metrics computed over all test rows (CTR's AUC and log loss) have none, and their Δ says n/a.
"""

from __future__ import annotations

import base64
import html
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from scipy import stats

from recsys.benchmarks import plots
from recsys.benchmarks.references import Reference, references_for
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.runtime import atomic_write_text

REQUIRED_COLUMNS = ("cell_id", "dataset", "model", "peer", "seed", "status", "error", "train_seconds", "peak_rss_mib",
                    "run_dir")
STATUSES = ("ok", "failed", "skipped", "pruned")  # skipped: a peer library not installed; pruned: a search trial
PER_USER_FILE = "per_user_test.parquet"
_FIX_STORE = "pass the STORE directory written by the grid runner (recsys/benchmarks/grid.py)"
#: what a report shows when no metrics are named: those of them the store has a column for
DEFAULT_METRICS = ("hr@10", "ndcg@10", "auc", "logloss", "rmse", "mae")


def load_store(path: str | Path) -> pl.DataFrame:
    """``STORE/results.parquet`` as a frame, checked; :class:`DataError` when missing, unreadable or malformed."""
    store = Path(path)
    if not store.is_dir():
        raise DataError("results store not found", where=str(store), fix=_FIX_STORE)
    file = store / "results.parquet"
    if not file.is_file():
        raise DataError("the store has no results.parquet", where=str(file), fix=f"run the grid into it first, or {_FIX_STORE}")
    try:
        frame = pl.read_parquet(file)
    except Exception as error:  # noqa: BLE001 - polars raises several types for damaged files
        raise DataError(f"results.parquet cannot be read ({type(error).__name__}: {str(error)[:120]})", where=str(file),
                        fix="the file is damaged; rerun the grid into a fresh STORE") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"results.parquet lacks the columns {missing}", where=str(file), fix=_FIX_STORE)
    bad = frame.filter(~pl.col("status").is_in(STATUSES))["status"].unique().to_list()
    if bad:
        raise DataError(f"unknown status values {bad[:5]} (expected one of {list(STATUSES)})",
                        where=f"{file}, column 'status'", fix=_FIX_STORE)
    if "kind" in frame.columns:
        frame = frame.filter(pl.col("kind").is_null() | (pl.col("kind") != "trial"))
    floats = [c for c in frame.columns if c.startswith(("test/", "valid/"))]
    return frame.with_columns(pl.col("peer").cast(pl.Boolean), pl.col(floats).cast(pl.Float64))


def metric_column(metric: str) -> str:
    """The results column of ``metric``: ``hr@10`` -> ``test/hr@10``; prefixed names stay as they are."""
    return metric if "/" in metric else f"test/{metric}"


def default_metrics(frame: pl.DataFrame) -> list[str]:
    """The :data:`DEFAULT_METRICS` ``frame`` has test columns for; ``hr@10`` and ``ndcg@10`` when it has none.

    >>> default_metrics(pl.DataFrame({"test/auc": [0.7], "test/logloss": [0.5], "valid/auc": [0.7]}))
    ['auc', 'logloss']
    """
    return [m for m in DEFAULT_METRICS if metric_column(m) in frame.columns] or list(DEFAULT_METRICS[:2])


def _check_metrics(frame: pl.DataFrame, metrics: Sequence[str]) -> None:
    missing = [m for m in metrics if metric_column(m) not in frame.columns]
    if missing:
        available = sorted(c.removeprefix("test/") for c in frame.columns if c.startswith("test/"))
        raise ConfigError(f"metrics {missing} are not in the store", where="results.parquet",
                          fix=f"choose among {available} (bare names are test metrics; prefix valid/ for validation)")


def summarize(frame: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """Per dataset x model: for each metric ``m`` its mean (``m``) and sample std (``m_std``, ddof=1) over finished seeds.

    Also ``seeds`` (finished cells), ``failed`` (failed or skipped cells, never averaged), mean ``train_seconds`` and the
    largest ``peak_rss_mib``. Models whose every cell failed keep a row with ``seeds`` 0 and null metrics.
    """
    _check_metrics(frame, metrics)
    keys = ["dataset", "model"]
    ok = frame.filter(pl.col("status") == "ok")
    values = [e for m in metrics for e in (pl.col(metric_column(m)).mean().alias(m), pl.col(metric_column(m)).std().alias(f"{m}_std"))]
    timing = [pl.col(c).mean() for c in ("wall_seconds", "throughput") if c in frame.columns]
    finished = ok.group_by(keys).agg(pl.len().alias("seeds"), *values, pl.col("train_seconds").mean(),
                                     pl.col("peak_rss_mib").max(), *timing)
    library = [pl.col("library").first()] if "library" in frame.columns else []
    cells = frame.group_by(keys).agg(pl.col("peer").first(), *library, (pl.col("status") != "ok").sum().alias("failed"))
    out = cells.join(finished, on=keys, how="left").with_columns(pl.col("seeds").fill_null(0).cast(pl.Int64),
                                                                  pl.col("failed").cast(pl.Int64))
    return out.sort("dataset", "peer", "model")


def failed_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """The cells that did not finish (failed or skipped): dataset, model, seed, cell_id, status, error."""
    return frame.filter(pl.col("status") != "ok").select("dataset", "model", "seed", "cell_id", "status", "error").sort(
        "dataset", "model", "seed")


def _per_user(store: Path, cells: pl.DataFrame, key: str) -> pl.DataFrame:
    """model, user, value, seeds: each model's per-user ``key`` averaged over the cells (seeds) that kept per-user
    values; a cell without the file (an exported store of a grid run before exports kept them) is left out."""
    parts = []
    for model, run_dir in cells.select("model", "run_dir").iter_rows():  # one file per cell
        path = store / run_dir / PER_USER_FILE
        try:
            part = pl.read_parquet(path)
        except FileNotFoundError:
            continue
        except Exception as error:  # noqa: BLE001 - polars raises several types for damaged files
            raise DataError(f"per-user results cannot be read ({type(error).__name__})", where=str(path),
                            fix="rerun that cell") from None
        if "user" not in part.columns or key not in part.columns:
            raise DataError(f"per-user results lack the columns 'user' and '{key}'", where=str(path),
                            fix=f"choose a metric among {[c for c in part.columns if c != 'user']}")
        parts.append(part.select(pl.lit(model).alias("model"), "user", pl.col(key).cast(pl.Float64).alias("value"),
                                 pl.lit(run_dir).alias("run_dir")))
    if not parts:
        raise DataError("no finished cell kept per-user results", where=str(store / "cells"), fix="rerun the cells")
    return pl.concat(parts).group_by("model", "user").agg(pl.col("value").mean(), pl.col("run_dir").n_unique().alias("seeds"))


def has_per_user(store_path: str | Path, frame: pl.DataFrame, dataset: str, metric: str) -> bool:
    """True when a finished cell of ``dataset`` that measured ``metric`` wrote per-user test values (ranking runs do;
    CTR's AUC and log loss are computed over all test rows and have none)."""
    column = metric_column(metric)
    if column not in frame.columns:
        return False
    cells = frame.filter((pl.col("dataset") == dataset) & (pl.col("status") == "ok") & pl.col(column).is_not_null())
    return any((Path(store_path) / run_dir / PER_USER_FILE).is_file() for run_dir in cells["run_dir"].to_list())


def _paired_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """t statistic, t-test p, Wilcoxon p of ``a`` against ``b``; identical arrays give (0, 1, 1), fewer than 2 users NaN."""
    if len(a) < 2:
        return float("nan"), float("nan"), float("nan")
    if not np.any(a != b):  # no difference at all: scipy would divide 0 by 0 or refuse
        return 0.0, 1.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(a, b)
        try:
            wilcoxon_p = float(stats.wilcoxon(a, b).pvalue)
        except ValueError:
            wilcoxon_p = float("nan")
    return float(t.statistic), float(t.pvalue), wilcoxon_p


def significance(store_path: str | Path, dataset: str, metric: str, baseline: str) -> pl.DataFrame:
    """Each other model on ``dataset`` against ``baseline`` on per-user test ``metric`` (values averaged over seeds).

    Users are inner-joined on ``user``; a cell that kept no per-user file is left out, and ``seeds`` counts the
    model's cells that entered. Columns: dataset, metric, model, baseline, n_users, seeds, mean, baseline_mean,
    mean_diff (model - baseline), t_statistic and t_pvalue (``scipy.stats.ttest_rel``), wilcoxon_pvalue
    (``scipy.stats.wilcoxon``). Identical per-user values give statistic 0 and p-values 1.
    """
    store = Path(store_path)
    key = metric.removeprefix("test/")
    if "/" in key:
        raise ConfigError(f"per-user values exist for test metrics only, not {metric}", where="significance",
                          fix=f"pass {key.split('/')[-1]}")
    frame = load_store(store)
    cells = frame.filter((pl.col("dataset") == dataset) & (pl.col("status") == "ok"))
    if metric_column(key) in cells.columns:  # a store may hold grids of other tasks on the same dataset
        cells = cells.filter(pl.col(metric_column(key)).is_not_null())
    if cells.height == 0:
        raise DataError(f"no finished cell on dataset {dataset!r} measured {key}", where=str(store / "results.parquet"),
                        fix=f"choose among {sorted(frame['dataset'].unique().to_list())}")
    models = sorted(cells["model"].unique().to_list())
    if baseline not in models:
        raise ConfigError(f"baseline {baseline!r} has no finished cell on {dataset}", where="--baseline",
                          fix=f"choose among {models}")
    per_user = _per_user(store, cells, key)
    base = per_user.filter(pl.col("model") == baseline).select("user", pl.col("value").alias("base"))
    if base.height == 0:
        raise DataError(f"baseline {baseline!r} kept no per-user results on {dataset}", where=str(store / "cells"),
                        fix=f"rerun its cells: recsys compare GRID --models {baseline} --rerun")
    joined = per_user.filter(pl.col("model") != baseline).join(base, on="user", how="inner").sort("model", "user")
    rows = []
    for (model,), pairs in joined.group_by(["model"], maintain_order=True):  # one test per model
        a, b = pairs["value"].to_numpy(), pairs["base"].to_numpy()
        t, t_p, w_p = _paired_tests(a, b)
        rows.append({"dataset": dataset, "metric": key, "model": model, "baseline": baseline, "n_users": len(a),
                     "seeds": int(pairs["seeds"].max()), "mean": float(a.mean()), "baseline_mean": float(b.mean()),
                     "mean_diff": float((a - b).mean()), "t_statistic": t, "t_pvalue": t_p, "wilcoxon_pvalue": w_p})
    schema = {"dataset": pl.String, "metric": pl.String, "model": pl.String, "baseline": pl.String, "n_users": pl.Int64,
              "seeds": pl.Int64,
              **{c: pl.Float64 for c in ("mean", "baseline_mean", "mean_diff", "t_statistic", "t_pvalue", "wilcoxon_pvalue")}}
    return pl.DataFrame(rows, schema=schema)


def load_training_curves(store_path: str | Path, frame: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """dataset, model, seed, epoch and one column per validation metric, from each finished cell's metrics.csv.

    ``metrics`` are named as in metrics.csv (``ndcg@10``; a ``valid/`` or ``test/`` prefix is dropped); cells
    without a metrics.csv (models fitted without epochs), with no rows or without any of the metrics are left out.
    """
    keys = list(dict.fromkeys(m.split("/")[-1] for m in metrics))
    parts = []
    for dataset, model, seed, run_dir in frame.filter(pl.col("status") == "ok").select(
            "dataset", "model", "seed", "run_dir").iter_rows():  # one file per cell
        try:
            rows = plots.read_metrics_csv(Path(store_path) / run_dir)
        except DataError:
            continue
        if any(k in rows.columns for k in keys):
            epoch = pl.col("epoch") if "epoch" in rows.columns else pl.int_range(1, pl.len() + 1)
            values = [(pl.col(k) if k in rows.columns else pl.lit(None)).cast(pl.Float64).alias(k) for k in keys]
            parts.append(rows.select(pl.lit(dataset).alias("dataset"), pl.lit(model).alias("model"),
                                     pl.lit(seed, dtype=pl.Int64).alias("seed"), epoch.cast(pl.Int64).alias("epoch"),
                                     *values))
    schema = {"dataset": pl.String, "model": pl.String, "seed": pl.Int64, "epoch": pl.Int64, **dict.fromkeys(keys, pl.Float64)}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def export_store(store_path: str | Path, dest: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """Write a compact copy of a store that its report can be rebuilt from (and a grid resumed on, from a copy).

    ``dest`` gets ``results.parquet`` and, per cell, ``metrics.csv``, ``metrics.json`` and the per-user test values
    of ``metrics`` (default: :func:`default_metrics`) with ``user``; checkpoints, data copies and logs stay behind.
    A finished store is small enough to commit (``docs/results/store``), so a report survives the machine that ran
    the grid. Written to a temporary folder beside ``dest``, then renamed onto it. Returns ``dest``.
    """
    import shutil
    import tempfile

    store, dest = Path(store_path), Path(dest)
    if dest.resolve() == store.resolve():
        raise ConfigError("cannot export a store onto itself (the copy leaves its checkpoints behind)", where=str(dest),
                          fix="name another folder, e.g. docs/results/store")
    frame = load_store(store)
    keep = [m.removeprefix("test/") for m in (metrics if metrics is not None else default_metrics(frame))]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        frame.write_parquet(tmp / "results.parquet")
        for run_dir in frame.filter(pl.col("status") == "ok")["run_dir"].drop_nulls().to_list():  # one folder per cell
            source, target = store / run_dir, tmp / run_dir
            target.mkdir(parents=True)
            for name in ("metrics.csv", "metrics.json"):
                if (source / name).is_file():
                    shutil.copyfile(source / name, target / name)
            if (source / PER_USER_FILE).is_file():
                per_user = pl.read_parquet(source / PER_USER_FILE)
                per_user.select("user", *(c for c in keep if c in per_user.columns)).write_parquet(
                    target / PER_USER_FILE, compression="zstd", compression_level=19)
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# ---- rendering: one table model, two outputs -------------------------------------------------------------------

Cell = str | tuple[str, bool]  # text, or (text, bold)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    def text(cell: Cell) -> str:
        value, bold = cell if isinstance(cell, tuple) else (cell, False)
        value = value.replace("|", "\\|")
        return f"**{value}**" if bold and value else value

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(text(c) for c in row) + " |" for row in rows])


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    def text(cell: Cell) -> str:
        value, bold = cell if isinstance(cell, tuple) else (cell, False)
        return f"<td><b>{html.escape(value)}</b></td>" if bold else f"<td>{html.escape(value)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(text(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2g}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def best_mask(values: pl.Series, metric: str) -> np.ndarray:
    """True where ``values`` holds the best (max, or min for error metrics) non-null value; ties all True."""
    array = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
    if np.all(np.isnan(array)):
        return np.zeros(len(array), dtype=bool)
    best = np.nanmin(array) if plots.lower_is_better(metric) else np.nanmax(array)
    return array == best


def _summary_table(rows: pl.DataFrame, metrics: Sequence[str], tests: dict[str, pl.DataFrame | None],
                   baseline: str | None) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of one dataset's table: mean ± std (best bold), Δ vs baseline (None: n/a), seeds, time, memory."""
    headers = ["model", "library", "seeds", *metrics, *(f"Δ {m} vs {baseline}" for m in tests), "train s",
               "peak RSS MiB", "failed"]
    best = {m: best_mask(rows[m], m) for m in metrics}
    table: list[list[Cell]] = []
    for i, row in enumerate(rows.iter_rows(named=True)):  # one row per model
        cells: list[Cell] = [row["model"] + (" (peer)" if row["peer"] else ""), str(row.get("library") or ""),
                             str(row["seeds"])]
        for m in metrics:
            std = f" ± {_num(row[f'{m}_std'])}" if row[f"{m}_std"] is not None else ""
            cells.append((_num(row[m]) + std if row[m] is not None else "–", bool(best[m][i])))
        for test in tests.values():
            hit = None if test is None else test.filter(pl.col("model") == row["model"])
            if row["model"] == baseline:
                cells.append("baseline")
            elif hit is None:
                cells.append("n/a")
            elif hit.height:
                t = hit.row(0, named=True)
                part = f", {t['seeds']} of {row['seeds']} seeds" if t["seeds"] != row["seeds"] else ""
                cells.append(f"{t['mean_diff']:+.4f} (t p={_p(t['t_pvalue'])}, W p={_p(t['wilcoxon_pvalue'])}, "
                             f"n={t['n_users']}{part})")
            else:
                cells.append("n/a (no per-user values kept)" if row["seeds"] else "–")
        cells += [_num(row["train_seconds"], 2), _num(row["peak_rss_mib"], 0), str(row["failed"])]
        table.append(cells)
    return headers, table


def _measured_references(dataset: str, frame: pl.DataFrame) -> list[Reference]:
    """The published numbers for ``dataset`` in a metric some cell of the store measured on it (a CTR grid shows
    no RMSE reference, a ranking grid no AUC one)."""
    rows = frame.filter(pl.col("dataset") == dataset)
    return [ref for ref in references_for(dataset)
            if metric_column(ref.metric) in rows.columns and rows[metric_column(ref.metric)].drop_nulls().len()]


def _published_table(dataset: str, frame: pl.DataFrame) -> tuple[list[str], list[list[Cell]]]:
    headers = ["published model", "metric", "published", "ours (model: mean over seeds)", "source", "protocol"]
    rows = []
    for ref in _measured_references(dataset, frame):
        column = metric_column(ref.metric)
        ours = "–"
        if ref.ours is not None and column in frame.columns:
            mine = frame.filter((pl.col("dataset") == dataset) & (pl.col("model") == ref.ours) & (pl.col("status") == "ok"))
            if mine.height:
                ours = f"{ref.ours}: {_num(mine[column].mean())}"
        rows.append([ref.model, ref.metric, ("≈" if ref.approximate else "") + f"{ref.value:g}", ours, ref.source,
                     ref.protocol])
    return headers, rows


def _machines(frame: pl.DataFrame) -> list[str]:
    """One line per distinct machine (CPU, cores, threads, GPU), with the range of 1-minute load averages seen."""
    machines: dict[str, list[float]] = {}
    for raw in frame["machine"].drop_nulls().to_list() if "machine" in frame.columns else []:
        try:
            m = json.loads(raw)
            line = f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('threads')} threads, GPU {m.get('gpu') or 'none'}"
            load = m.get("load_1min")
        except (ValueError, AttributeError):
            line, load = str(raw), None
        machines.setdefault(line, [])
        if isinstance(load, (int, float)):
            machines[line].append(float(load))
    return [line + (f"; load average {min(loads):.1f}-{max(loads):.1f} during the cells" if loads else "")
            for line, loads in sorted(machines.items())]


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;white-space:pre-wrap}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}p.note{color:#555}")


def write_report(store_path: str | Path, out_dir: str | Path, metrics: Sequence[str] | None = None,
                 baseline: str | None = None, references: bool = True) -> dict[str, Path]:
    """Write ``report.md``, a self-contained ``report.html`` (plots inlined as data URIs) and the PNG plots.

    Per dataset: mean ± std over seeds (best per column in bold), seeds, train seconds, peak RSS, the paired
    tests against ``baseline`` (when given), the published numbers beside ours (``references``), and plots:
    metric bars, quality vs training time with its Pareto front, metric@K curves, validation curves per epoch.
    Failed cells are listed in their own table. ``metrics`` defaults to :func:`default_metrics` of the store; a
    metric without per-user values (CTR's AUC, log loss) gets no paired test: its Δ reads n/a.
    Returns ``{"markdown", "html", <plot name>: path}``.
    """
    store, out = Path(store_path), Path(out_dir)
    frame = load_store(store)
    if frame.height == 0:
        raise DataError("the store has no cells yet", where=str(store / "results.parquet"), fix="run the grid first")
    metrics = list(metrics) if metrics is not None else default_metrics(frame)
    summary = summarize(frame, metrics)
    if baseline is not None and baseline not in frame["model"].to_list():
        raise ConfigError(f"baseline {baseline!r} is not a model of the store", where="--baseline",
                          fix=f"choose among {sorted(frame['model'].unique().to_list())}")
    at_k = [c.removeprefix("test/") for c in frame.columns if re.match(r"^test/.+@\d+$", c)]
    full = summarize(frame, at_k) if at_k else summary
    bases = list(dict.fromkeys(c.split("@")[0] for c in at_k))
    ok, failed = int((frame["status"] == "ok").sum()), failed_cells(frame)
    md = ["# Benchmark report", "", f"Store `{store}`: {frame.height} cells, {ok} finished, {failed.height} failed or skipped."]
    body = [f"<h1>Benchmark report</h1><p>Store <code>{html.escape(str(store))}</code>: {frame.height} cells, {ok} "
            f"finished, {failed.height} failed or skipped.</p>"]
    facts = [f"code version: {', '.join(frame['code_version'].drop_nulls().unique().sort().to_list())}"
             if "code_version" in frame.columns else "", *(f"machine: {m}" for m in _machines(frame))]
    note = ("Test metrics: mean ± std (sample, ddof=1) over finished seeds; bold: the best value of the column "
            "within the dataset. Failed cells are never averaged.")
    if baseline is not None:
        note += (f" Δ vs {baseline}: mean per-user difference (users inner-joined, each model's values averaged over "
                 "its seeds) with the p-values of the paired t-test (t) and the Wilcoxon signed-rank test (W).")
    for text in [*filter(None, facts), note]:
        md += ["", text]
        body.append(f"<p class='note'>{html.escape(text)}</p>")
    paths: dict[str, Path] = {}

    def figure(name: str, fig: Figure, alt: str) -> None:
        path = plots.save_png(fig, out / f"{name}.png")
        paths[name] = path
        md.extend(["", f"![{alt}]({path.name})"])
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")

    for dataset in summary["dataset"].unique().sort().to_list():
        rows = summary.filter(pl.col("dataset") == dataset)
        md += ["", f"## {dataset}"]
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        tests: dict[str, pl.DataFrame | None] = {}
        notes = []
        if baseline is not None:
            for m in (m for m in metrics if "/" not in m or m.startswith("test/")):
                if not has_per_user(store, frame, dataset, m):
                    tests[m] = None
                    notes.append(f"Δ {m} vs {baseline}: n/a, no finished cell wrote per-user test values of {m} "
                                 "(metrics over all test rows, such as CTR's AUC and log loss, have none)")
                    continue
                try:
                    tests[m] = significance(store, dataset, m, baseline)
                except RecsysError as error:
                    notes.append(f"Δ {m} vs {baseline} unavailable: {error.what}" + (f" ({error.where})" if error.where else ""))
                    tests[m] = pl.DataFrame(schema={"model": pl.String})
        headers, table = _summary_table(rows, metrics, tests, baseline)
        md += ["", _md_table(headers, table), *(f"\n{n}" for n in notes)]
        body += [_html_table(headers, table), *(f"<p class='note'>{html.escape(n)}</p>" for n in notes)]
        if references and _measured_references(dataset, frame):
            headers, table = _published_table(dataset, frame)
            md += ["", "Published numbers (measured under their own protocol; compare with care):", "",
                   _md_table(headers, table)]
            body += ["<p>Published numbers (measured under their own protocol; compare with care):</p>",
                     _html_table(headers, table)]
        slug = _slug(dataset)
        measured = [m for m in metrics if rows[m].drop_nulls().len()]  # e.g. no hr@10 on a rating dataset
        if measured:
            figure(f"{slug}-bars", plots.metric_bars(summary, dataset, measured), f"{dataset}: {', '.join(measured)}")
        timed = [m for m in measured if rows.drop_nulls([m, "train_seconds"]).height]
        if timed:
            figure(f"{slug}-pareto", plots.pareto_scatter(summary, dataset, timed), f"{dataset}: quality vs training time")
        here = full.filter(pl.col("dataset") == dataset)
        curve_bases = [b for b in bases if len([c for c in at_k if c.startswith(f"{b}@") and here[c].drop_nulls().len()]) > 1]
        if curve_bases:
            figure(f"{slug}-at-k", plots.metric_at_k(full, dataset, curve_bases), f"{dataset}: metric@K")
        curves = load_training_curves(store, frame.filter(pl.col("dataset") == dataset), metrics)
        drawn = [m.split("/")[-1] for m in metrics if curves[m.split("/")[-1]].drop_nulls().len()]
        if drawn:
            figure(f"{slug}-curves", plots.training_curves(curves, dataset, list(dict.fromkeys(drawn))),
                   f"{dataset}: validation metrics per epoch")
    if failed.height:
        headers = ["dataset", "model", "seed", "cell", "status", "error"]
        table = [[str(v)[:500] if v is not None else "" for v in row] for row in failed.iter_rows()]  # one per cell
        md += ["", "## Failed cells", "", _md_table(headers, [[c.replace("\n", " ") for c in r] for r in table])]
        body += ["<h2>Failed cells</h2>", _html_table(headers, table)]
    paths["markdown"] = atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Benchmark report</title><style>{_CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
    paths["html"] = atomic_write_text(out / "report.html", page)
    return paths
