"""Figures for benchmark reports and single runs, as ``matplotlib.figure.Figure`` objects (no pyplot, no global state).

Each figure function returns the ``Figure`` (tests inspect its artists); :func:`save_png` writes one atomically.
The summary frames they read are :func:`recsys.benchmarks.report.summarize`'s: one row per dataset x model with
``peer``, ``train_seconds`` and, per metric ``m``, the columns ``m`` (mean over seeds) and ``m_std``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from recsys.errors import DataError
from recsys.runtime import atomic_write

LOWER_IS_BETTER = frozenset({"rmse", "mae", "logloss", "log_loss", "loss"})
NOT_CURVES = frozenset({"epoch", "seconds", "num_users", "step"})  # metrics.csv columns that are no learning curve
PEER_HATCH = "//"
SEED_STYLES = ("-", "--", ":", "-.")  # seeds of one model: one colour, these line styles in turn
DPI = 110


def lower_is_better(metric: str) -> bool:
    """True for error metrics (RMSE, MAE, log-loss, loss), whatever prefix or ``@K`` they carry.

    >>> lower_is_better("test/rmse"), lower_is_better("ndcg@10")
    (True, False)
    """
    return metric.rsplit("/", 1)[-1].split("@", 1)[0] in LOWER_IS_BETTER


def pareto_front(cost: np.ndarray, value: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point beats on both ``cost`` (lower) and ``value``.

    Among exact duplicates only the first is on the front.

    >>> pareto_front(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.3, 0.2, 0.4])).tolist()
    [True, True, False, True]
    """
    cost, value = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    value = value if higher_is_better else -value
    order = np.lexsort((-value, cost))  # by cost, then the better value first
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(value[order])[:-1]))
    mask = np.zeros(len(cost), dtype=bool)
    mask[order] = value[order] > best_before
    return mask


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _colours(models: Sequence[str]) -> dict[str, str]:
    return {model: f"C{i % 10}" for i, model in enumerate(models)}


def _rows(summary: pl.DataFrame, dataset: str, *required: str) -> pl.DataFrame:
    rows = summary.filter(pl.col("dataset") == dataset)
    return rows.drop_nulls(list(required)) if required else rows


def metric_bars(summary: pl.DataFrame, dataset: str, metrics: Sequence[str]) -> Figure:
    """One panel per metric: a bar per model (mean over seeds, error bar = std), peers hatched."""
    models = _rows(summary, dataset)["model"].to_list()
    fig = _figure(max(3.5, 0.6 * len(models) + 1.5) * len(metrics), 3.6)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = _colours(models)
    for ax, metric in zip(axes, metrics, strict=True):
        rows = _rows(summary, dataset, metric)
        std = rows[f"{metric}_std"].fill_null(0.0).to_numpy() if f"{metric}_std" in rows.columns else None
        bars = ax.bar(np.arange(rows.height), rows[metric].to_numpy(), yerr=std, capsize=3,
                      color=[colours[m] for m in rows["model"]], edgecolor="black", linewidth=0.6)
        for bar, peer in zip(bars, rows["peer"], strict=True):
            bar.set_hatch(PEER_HATCH if peer else None)
        ax.set_xticks(np.arange(rows.height), rows["model"].to_list(), rotation=30, ha="right")
        values = rows[metric].to_numpy()
        low, high = (float(values.min()), float(values.max())) if rows.height else (0.0, 0.0)
        if low > 0 and high > 0 and low / high > 0.8:  # e.g. AUC 0.77-0.79: bars from 0 would all look alike
            spread = (high - low) + (float(np.nanmax(std)) if std is not None and len(std) else 0.0)
            ax.set_ylim(max(0.0, low - 1.5 * spread - 1e-3 * high), high + 0.8 * spread + 1e-3 * high)
            ax.text(0.01, 0.99, "axis does not start at 0", transform=ax.transAxes, va="top", fontsize=7, color="dimgray")
        ax.set_ylabel(f"test {metric}" if "/" not in metric else metric)
        ax.set_title(f"{dataset}: {metric}" + (" (lower is better)" if lower_is_better(metric) else ""))
        ax.grid(axis="y", alpha=0.3)
    fig.supxlabel(f"hatched ({PEER_HATCH}): other libraries; error bars: std over seeds", fontsize=7)  # laid out below the tick labels
    return fig


def pareto_scatter(summary: pl.DataFrame, dataset: str, metrics: Sequence[str]) -> Figure:
    """One panel per metric: quality against mean training seconds, a point per model, the Pareto front drawn.

    Each front line has ``gid="pareto-front"``; its data are the front's points sorted by time.
    """
    fig = _figure(5.5 * len(metrics), 4.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = _colours(_rows(summary, dataset)["model"].to_list())
    for ax, metric in zip(axes, metrics, strict=True):
        rows = _rows(summary, dataset, metric, "train_seconds").sort("train_seconds")
        x, y = rows["train_seconds"].to_numpy(), rows[metric].to_numpy()
        for model, peer, xi, yi in zip(rows["model"], rows["peer"], x, y, strict=True):
            ax.scatter([xi], [yi], color=colours[model], marker="s" if peer else "o", edgecolor="black", zorder=3,
                       label=model + (" (peer)" if peer else ""))
            ax.annotate(model, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(x, y, higher_is_better=not lower_is_better(metric))
        ax.plot(x[front], y[front], drawstyle="steps-post", color="black", linestyle="--", linewidth=1,
                label="Pareto front", gid="pareto-front")
        if rows.height and x.min() > 0 and x.max() / x.min() > 50:
            ax.set_xscale("log")
        ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        ax.set_xlabel("training seconds (mean over seeds)")
        ax.set_ylabel(f"test {metric}" if "/" not in metric else metric)
        ax.set_title(f"{dataset}: {metric} vs training time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def at_k_columns(columns: Sequence[str], base: str) -> list[tuple[int, str]]:
    """``(K, column)`` for every ``base@K`` column, sorted by K.

    >>> at_k_columns(["hr@20", "hr@5", "ndcg@10", "hr"], "hr")
    [(5, 'hr@5'), (20, 'hr@20')]
    """
    pattern = re.compile(rf"^{re.escape(base)}@(\d+)$")
    return sorted((int(m.group(1)), c) for c in columns if (m := pattern.match(c)))


def metric_at_k(summary: pl.DataFrame, dataset: str, bases: Sequence[str]) -> Figure:
    """One panel per metric name (``hr``, ``ndcg``, ...): its mean at every K present, one line per model."""
    rows = _rows(summary, dataset)
    bases = [base for base in bases if at_k_columns(rows.columns, base)]
    if not bases:
        raise DataError("no metric@K columns to plot", where=f"dataset {dataset}", fix="evaluate at several K")
    ncols = min(3, len(bases))
    fig = _figure(4.2 * ncols, 3.4 * math.ceil(len(bases) / ncols))
    axes = fig.subplots(math.ceil(len(bases) / ncols), ncols, squeeze=False).ravel()
    colours = _colours(rows["model"].to_list())
    for ax, base in zip(axes, bases, strict=False):
        ks, columns = zip(*at_k_columns(rows.columns, base), strict=True)
        values = rows.select(columns).to_numpy()  # (models, K)
        for model, peer, line in zip(rows["model"], rows["peer"], values, strict=True):
            ax.plot(ks, line, marker="o", color=colours[model], linestyle="--" if peer else "-", label=model)
        ax.set_xticks(ks)
        ax.set_xlabel("K")
        ax.set_ylabel(f"test {base}@K")
        ax.set_title(f"{dataset}: {base}@K")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    return fig


def training_curves(curves: pl.DataFrame, dataset: str, metrics: Sequence[str]) -> Figure:
    """One panel per validation metric: its value per epoch, a line per model and seed.

    ``curves`` has columns dataset, model, seed, epoch and one per metric (null where not evaluated).
    """
    rows = curves.filter(pl.col("dataset") == dataset).sort("model", "seed", "epoch").with_columns(
        (pl.col("seed").rank("dense").over("model") - 1).cast(pl.Int64).alias("nth"))  # the model's 1st, 2nd... seed
    fig = _figure(5.5 * len(metrics), 4.0)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = _colours(rows["model"].unique(maintain_order=True).to_list())
    for ax, metric in zip(axes, metrics, strict=True):
        for (model, seed, nth), run in rows.drop_nulls([metric]).group_by(["model", "seed", "nth"], maintain_order=True):
            ax.plot(run["epoch"].to_numpy(), run[metric].to_numpy(), color=colours[model], marker=".",
                    linestyle=SEED_STYLES[nth % len(SEED_STYLES)], label=f"{model} (seed {seed})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title(f"{dataset}: validation {metric} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def read_metrics_csv(run_dir: str | Path) -> pl.DataFrame:
    """A run's ``metrics.csv`` (one row per epoch); :class:`DataError` when the directory or file is missing or empty."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("run directory not found", where=str(run_dir), fix="pass a run directory written by recsys-train")
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise DataError("the run has no metrics.csv (models fitted without epochs write none)", where=str(path),
                        fix="pass a run trained by the Trainer")
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"cannot read metrics.csv ({type(error).__name__})", where=str(path),
                        fix="the file is damaged; train the run again") from None
    if frame.height == 0:
        raise DataError("metrics.csv has no rows (no epoch finished)", where=str(path), fix="train for at least one epoch")
    return frame


def run_curves(metrics: pl.DataFrame, title: str = "") -> Figure:
    """One run's training curves: a panel for the loss and one per metric name (a line per K)."""
    numeric = [c for c, dtype in metrics.schema.items() if dtype.is_numeric() and c not in NOT_CURVES
               and metrics[c].null_count() < metrics.height]
    panels: dict[str, list[str]] = {}
    for column in numeric:
        panels.setdefault(column.split("@", 1)[0], []).append(column)
    if not panels:
        raise DataError("metrics.csv has no loss or metric column with values", where=title or None,
                        fix="train with a validation evaluator")
    epoch = metrics["epoch"] if "epoch" in metrics.columns else pl.Series("epoch", np.arange(1, metrics.height + 1))
    ncols = min(3, len(panels))
    fig = _figure(4.2 * ncols, 3.2 * math.ceil(len(panels) / ncols))
    axes = fig.subplots(math.ceil(len(panels) / ncols), ncols, squeeze=False).ravel()
    for ax, (name, columns) in zip(axes, panels.items(), strict=False):
        for column in columns:
            keep = metrics[column].is_not_null().to_numpy()
            ax.plot(epoch.to_numpy()[keep], metrics[column].to_numpy()[keep], marker=".", label=column)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name if name == "loss" else f"validation {name}")
        ax.grid(alpha=0.3)
        if len(columns) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, drawn once by the Agg canvas (no pyplot)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (readers never see half a file); returns ``path``."""
    data = png_bytes(fig)
    return atomic_write(path, lambda file: file.write(data))


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Plot one run's ``metrics.csv`` (loss and every validation metric per epoch) to ``out``.

    ``out`` defaults to ``RUN_DIR/training_curves.png``; returns the path written.
    """
    run_dir = Path(run_dir)
    fig = run_curves(read_metrics_csv(run_dir), title=str(run_dir))
    return save_png(fig, run_dir / "training_curves.png" if out is None else Path(out))
