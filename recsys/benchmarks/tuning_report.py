"""The report of a hyperparameter search: trials table, best config, defaults against tuned, two figures.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot), like :mod:`recsys.benchmarks.plots`:
:func:`optimization_history` (every trial's validation value and the best so far, pruned trials at their last
reported value) and :func:`param_importances` (Optuna's fANOVA importances, when the study allows them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from recsys.benchmarks.plots import DPI, save_png
from recsys.benchmarks.tuning import SearchSpace
from recsys.runtime import atomic_write_text

__all__ = ["optimization_history", "param_importances", "trials_frame", "write_tune_report"]

SHOWN_TEST_METRICS = ("hr@10", "ndcg@10", "auc", "logloss", "rmse", "mae")  # beside the monitor, those a rerun has


def trials_frame(study: Any) -> pl.DataFrame:
    """One row per trial: number (1-based), state, value (a pruned trial's last report), seconds, params, error."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        rows.append({"trial": trial.number + 1, "state": trial.state.name.lower(), "value": value, "seconds": seconds,
                     "params": json.dumps(trial.params, default=str), "defaults": bool(trial.user_attrs.get("defaults")),
                     "error": trial.user_attrs.get("error")})
    schema = {"trial": pl.Int64, "state": pl.String, "value": pl.Float64, "seconds": pl.Float64, "params": pl.String,
              "defaults": pl.Boolean, "error": pl.String}
    return pl.DataFrame(rows, schema=schema)


def optimization_history(trials: pl.DataFrame, monitor: str, maximize: bool = True) -> Figure:
    """Each trial's validation value (pruned: x at its last report, not counted in the best) and the best so far."""
    fig = Figure(figsize=(6.4, 3.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    done = trials.filter(pl.col("state") == "complete").drop_nulls("value")
    pruned = trials.filter(pl.col("state") == "pruned").drop_nulls("value")
    ax.scatter(done["trial"].to_numpy(), done["value"].to_numpy(), s=22, color="C0", label="finished", gid="finished")
    if pruned.height:
        ax.scatter(pruned["trial"].to_numpy(), pruned["value"].to_numpy(), s=22, marker="x", color="C3",
                   label="pruned (last report)", gid="pruned")
    if done.height:
        values = done["value"].to_numpy()
        best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
        ax.step(done["trial"].to_numpy(), best, where="post", color="C1", label="best so far", gid="best")
    defaults = done.filter(pl.col("defaults"))
    if defaults.height:
        ax.scatter(defaults["trial"].to_numpy(), defaults["value"].to_numpy(), s=70, facecolors="none",
                   edgecolors="k", label="shipped defaults", gid="defaults")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {monitor}")
    ax.set_title(f"optimization history ({'higher' if maximize else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def param_importances(importances: dict[str, float], monitor: str) -> Figure:
    """Horizontal bars: each parameter's share of the variance in valid ``monitor`` (fANOVA)."""
    names = sorted(importances, key=importances.get)
    fig = Figure(figsize=(6.4, 0.45 * len(names) + 1.4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.barh(np.arange(len(names)), [importances[n] for n in names], color="C0")
    ax.set_yticks(np.arange(len(names)), names, fontsize=8)
    ax.set_xlabel(f"importance for valid {monitor} (fANOVA, sums to 1)")
    ax.set_title("hyperparameter importances")
    ax.grid(axis="x", alpha=0.3)
    return fig


def importances(study: Any) -> dict[str, float] | None:
    """Optuna's parameter importances, or None when the study cannot give them (fewer than 2 finished trials)."""
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None


def _num(value: Any, digits: int = 5) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def write_tune_report(study: Any, out: str | Path, *, space: SearchSpace, monitor: str, defaults: dict[str, Any],
                      best_params: dict[str, Any], overlay: Path, command: str, plain_command: str,
                      reruns: Sequence[dict[str, Any]], search_seconds: float) -> Path:
    """``OUT/tune_report.md`` with ``optimization_history.png`` and ``param_importances.png`` beside it."""
    out = Path(out)
    trials = trials_frame(study)
    maximize = study.direction.name == "MAXIMIZE"
    counts = {state: trials.filter(pl.col("state") == state).height for state in ("complete", "pruned", "fail")}
    trial_seconds = float(trials["seconds"].drop_nulls().sum()) if trials.height else 0.0
    best = study.best_trial
    lines = [f"# recsys tune: {study.study_name}", "",
             f"Space `{space.name}` ({space.source}){': ' + space.description if space.description else ''}. "
             f"Objective: valid `{monitor}` ({'maximize' if maximize else 'minimize'}), TPE sampler, "
             f"{type(study.pruner).__name__}; the test split is not read during the search.", "",
             f"Trials: {trials.height} ({counts['complete']} finished, {counts['pruned']} pruned, {counts['fail']} failed); "
             f"search time {trial_seconds:.1f} s summed over trials ({search_seconds:.1f} s wall in this run, "
             "reruns included).", "",
             "## Best", "",
             f"Trial {best.number + 1}: valid `{monitor}` {best.value:.5f}.", ""]
    lines += _table(["parameter", "tuned", "shipped default"],
                    [[f"`{p}`", repr(best_params[p]), repr(defaults.get(p))] for p in space.params])
    lines += ["", f"Overlay: `{overlay}`", "", f"Rerun: `{command}`", "",
              f"The same run without the overlay: `{plain_command}`", ""]
    if reruns:
        present = {k for row in reruns for k in row}
        wanted = [f"valid/{monitor}", f"test/{monitor}", *(f"test/{m}" for m in SHOWN_TEST_METRICS)]
        shown = list(dict.fromkeys(m for m in wanted if m in present))
        searched = {"tuned": best.value, "defaults": next(
            (t.value for t in study.get_trials(deepcopy=False) if t.user_attrs.get("defaults") and t.value is not None), None)}
        lines += ["## Defaults against tuned (one rerun each, the config's seed)", "",
                  f"`search valid {monitor}`: the value of the trial that ran the config (fitted on train); the rerun's "
                  "own columns follow its `fit_on` (no validation columns after a fit on train+valid).", ""]
        lines += _table(["config", f"search valid {monitor}", *shown, "train s"],
                        [[row["model"], _num(searched.get(str(row["model"]).rsplit("(", 1)[-1].rstrip(")"))),
                          *(_num(row.get(m)) for m in shown), _num(row.get("train_seconds"), 1)] for row in reruns])
        lines += [""]
    scores = importances(study)
    fig_names = ["optimization_history.png"]
    save_png(optimization_history(trials, monitor, maximize), out / "optimization_history.png")
    if scores:
        save_png(param_importances(scores, monitor), out / "param_importances.png")
        fig_names.append("param_importances.png")
    lines += ["## Plots", "", *(f"![{n[:-4].replace('_', ' ')}]({n})" for n in fig_names), ""]
    if not scores:
        lines += ["Parameter importances need at least two finished trials with different values.", ""]
    ranked = trials.sort("value", descending=maximize, nulls_last=True)
    lines += ["## Trials", ""]
    lines += _table(["trial", "state", f"valid {monitor}", "seconds", "params"],
                    [[str(r["trial"]) + (" (defaults)" if r["defaults"] else ""), r["state"], _num(r["value"]),
                      _num(r["seconds"], 1), r["params"] if not r["error"] else f"{r['params']} ({r['error'][:120]})"]
                     for r in ranked.iter_rows(named=True)])
    path = out / "tune_report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
