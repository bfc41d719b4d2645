"""Reports from a hand-built results store: numbers against numpy/scipy, figures by their artists, files by their bytes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import polars as pl
import pytest
from scipy import stats

from recsys.benchmarks import plots
from recsys.benchmarks.references import REFERENCES
from recsys.benchmarks.report import (
    default_metrics,
    export_store,
    failed_cells,
    load_store,
    load_training_curves,
    significance,
    summarize,
    write_report,
)
from recsys.cli.report import plot_main, report_main
from recsys.errors import ConfigError, DataError

DATASETS = {"amazon-beauty": 60, "ml-100k": 45}  # dataset -> test users
MODELS = {"bpr": (False, "recsys 0.1.0", 2.0), "als": (False, "recsys 0.1.0", 1.0),
          "implicit-als": (True, "implicit 0.7.3", 3.0)}  # model -> peer, library, train seconds
SEEDS = (0, 1)
KS = (5, 10, 20)
FAILED = ("amazon-beauty", "als", 1)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _per_user(rng: np.random.Generator, users: int, skill: float) -> dict[str, np.ndarray]:
    """Per-user hr@K / ndcg@K: hits nested in K, ndcg <= hr."""
    rank = rng.geometric(skill, size=users)  # 1-based rank of the test item
    out = {}
    for k in KS:
        hit = (rank <= k).astype(np.float64)
        out[f"hr@{k}"], out[f"ndcg@{k}"] = hit, hit / np.log2(rank + 1)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """STORE with 2 datasets x 3 models x 2 seeds (one failed cell); returns the path and the raw arrays."""
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(7)
    rows, arrays = [], {}
    for dataset, users in DATASETS.items():
        for m, (model, (peer, library, seconds)) in enumerate(MODELS.items()):
            for seed in SEEDS:
                cell_id = f"{dataset}-{model}-{seed}"
                run_dir = root / "cells" / cell_id
                run_dir.mkdir(parents=True)
                failed = (dataset, model, seed) == FAILED
                values = _per_user(rng, users, skill=0.04 + 0.02 * m)
                metrics = {f"test/{k}": (None if failed else float(v.mean())) for k, v in values.items()}
                if not failed:
                    arrays[(dataset, model, seed)] = values
                    pl.DataFrame({"user": np.arange(users, dtype=np.int64), **values}).write_parquet(run_dir / "per_user_test.parquet")
                    if not peer:  # our models train in epochs; the peer writes no metrics.csv
                        pl.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.5, 0.4], "seconds": [1.0, 1.0, 1.0],
                                      "hr@10": [0.01, 0.02, 0.03 + 0.01 * seed], "ndcg@10": [0.005, 0.01, 0.02]}
                                     ).write_csv(run_dir / "metrics.csv")
                rows.append({
                    "cell_id": cell_id, "grid": "test", "dataset": dataset, "model": model, "peer": peer,
                    "library": library, "seed": seed, "settings": json.dumps({"factors": 64}),
                    "status": "failed" if failed else "ok", "error": "CUDA out of memory" if failed else None,
                    "code_version": "abc123", "library_versions": json.dumps({"torch": "2.5"}),
                    "machine": json.dumps({"cpu": "test cpu", "cores": 2, "threads": 2, "gpu": None}), "threads": 2,
                    "wall_seconds": None if failed else seconds + 0.5, "train_seconds": None if failed else seconds + 0.1 * seed,
                    "peak_rss_mib": None if failed else 100.0 + 10 * m + seed, "throughput": None if failed else 1000.0 / seconds,
                    "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00",
                    "run_dir": f"cells/{cell_id}", **metrics, "valid/hr@10": None})
    pl.DataFrame(rows).write_parquet(root / "results.parquet")
    return {"path": root, "arrays": arrays, "rows": rows}


@pytest.fixture(scope="module")
def report(store: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(store["path"], tmp_path_factory.mktemp("report"), baseline="bpr")


def _expected_means(store: dict, metric: str) -> dict[tuple[str, str], list[float]]:
    """(dataset, model) -> the metric of each finished seed, straight from the arrays."""
    out: dict[tuple[str, str], list[float]] = {}
    for (dataset, model, _seed), values in store["arrays"].items():
        out.setdefault((dataset, model), []).append(float(values[metric].mean()))
    return out


def test_summarize_matches_numpy(store: dict) -> None:
    summary = summarize(load_store(store["path"]), ["hr@10", "ndcg@10"])
    assert summary.height == len(DATASETS) * len(MODELS)
    for metric in ("hr@10", "ndcg@10"):
        for (dataset, model), values in _expected_means(store, metric).items():
            row = summary.filter((pl.col("dataset") == dataset) & (pl.col("model") == model)).row(0, named=True)
            assert row[metric] == pytest.approx(np.mean(values))
            assert row["seeds"] == len(values)
            if len(values) > 1:
                assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1))
            else:
                assert row[f"{metric}_std"] is None
    beauty_als = summary.filter((pl.col("dataset") == "amazon-beauty") & (pl.col("model") == "als")).row(0, named=True)
    assert (beauty_als["seeds"], beauty_als["failed"]) == (1, 1)  # the failed seed is counted, not averaged
    assert beauty_als["train_seconds"] == pytest.approx(1.0)  # seed 0's only
    assert summary.filter(pl.col("model") == "implicit-als")["peer"].all()


def test_failed_cells_listed(store: dict) -> None:
    failed = failed_cells(load_store(store["path"]))
    assert failed.select("dataset", "model", "seed").rows() == [FAILED]
    assert failed["error"].to_list() == ["CUDA out of memory"]


def test_skipped_cells_are_listed_not_averaged(store: dict, tmp_path: Path) -> None:
    rows = pl.read_parquet(store["path"] / "results.parquet")
    skipped = rows.head(1).with_columns(cell_id=pl.lit("x"), model=pl.lit("lightfm"), peer=pl.lit(True), status=pl.lit("skipped"),
                                        error=pl.lit("lightfm is not installed"), **{"test/hr@10": None})
    pl.concat([rows, skipped]).write_parquet(tmp_path / "results.parquet")
    frame = load_store(tmp_path)
    row = summarize(frame, ["hr@10"]).filter(pl.col("model") == "lightfm").row(0, named=True)
    assert (row["seeds"], row["failed"], row["hr@10"]) == (0, 1, None)
    assert failed_cells(frame).filter(pl.col("status") == "skipped")["model"].to_list() == ["lightfm"]
    pl.concat([rows, skipped.with_columns(status=pl.lit("done"))]).write_parquet(tmp_path / "results.parquet")
    with pytest.raises(DataError, match="unknown status values"):
        load_store(tmp_path)


def _averaged(store: dict, dataset: str, model: str, metric: str) -> np.ndarray:
    seeds = [v[metric] for (d, m, _s), v in store["arrays"].items() if (d, m) == (dataset, model)]
    return np.mean(seeds, axis=0)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_significance_matches_scipy(store: dict, dataset: str) -> None:
    result = significance(store["path"], dataset, "ndcg@10", baseline="bpr")
    assert sorted(result["model"]) == ["als", "implicit-als"]
    base = _averaged(store, dataset, "bpr", "ndcg@10")
    for row in result.iter_rows(named=True):
        a = _averaged(store, dataset, row["model"], "ndcg@10")
        assert row["n_users"] == DATASETS[dataset]
        assert row["mean_diff"] == pytest.approx(np.mean(a - base))
        t = stats.ttest_rel(a, base)
        assert (row["t_statistic"], row["t_pvalue"]) == pytest.approx((t.statistic, t.pvalue))
        assert row["wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(a, base).pvalue)


def test_significance_of_identical_values_is_not_an_error(store: dict, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store["path"], copy)
    for seed in SEEDS:  # als on ml-100k now has exactly bpr's per-user values
        shutil.copy(copy / f"cells/ml-100k-bpr-{seed}/per_user_test.parquet", copy / f"cells/ml-100k-als-{seed}/per_user_test.parquet")
    row = significance(copy, "ml-100k", "hr@10", "bpr").filter(pl.col("model") == "als").row(0, named=True)
    assert (row["mean_diff"], row["t_statistic"], row["t_pvalue"], row["wilcoxon_pvalue"]) == (0.0, 0.0, 1.0, 1.0)


def test_paired_tests_use_the_seeds_that_kept_per_user_values(store: dict, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store["path"], copy)
    (copy / "cells/ml-100k-als-1/per_user_test.parquet").unlink()  # als keeps seed 0's values only
    for seed in SEEDS:  # implicit-als keeps none
        (copy / f"cells/ml-100k-implicit-als-{seed}/per_user_test.parquet").unlink()
    result = significance(copy, "ml-100k", "ndcg@10", "bpr")
    assert result["model"].to_list() == ["als"]
    row = result.row(0, named=True)
    a, base = store["arrays"][("ml-100k", "als", 0)]["ndcg@10"], _averaged(store, "ml-100k", "bpr", "ndcg@10")
    assert (row["seeds"], row["n_users"]) == (1, DATASETS["ml-100k"])
    assert row["t_pvalue"] == pytest.approx(stats.ttest_rel(a, base).pvalue)
    markdown = write_report(copy, tmp_path / "r", metrics=["ndcg@10"], baseline="bpr", references=False)["markdown"].read_text()
    headers, rows = _table(markdown, "ml-100k")
    by_model = {row[0].removesuffix(" (peer)"): row for row in rows}
    assert by_model["als"][headers.index("Δ ndcg@10 vs bpr")].endswith("n=45, 1 of 2 seeds)")
    assert by_model["implicit-als"][headers.index("Δ ndcg@10 vs bpr")] == "n/a (no per-user values kept)"
    for seed in SEEDS:
        (copy / f"cells/ml-100k-bpr-{seed}/per_user_test.parquet").unlink()
    with pytest.raises(DataError, match="baseline 'bpr' kept no per-user results"):
        significance(copy, "ml-100k", "ndcg@10", "bpr")


def test_an_exported_store_rebuilds_the_same_report(store: dict, tmp_path: Path) -> None:
    exported = export_store(store["path"], tmp_path / "exported", metrics=["ndcg@10"])
    assert sorted(p.name for p in (exported / "cells/ml-100k-bpr-0").iterdir()) == ["metrics.csv", "per_user_test.parquet"]
    assert pl.read_parquet(exported / "cells/ml-100k-bpr-0/per_user_test.parquet").columns == ["user", "ndcg@10"]
    assert not (exported / f"cells/{'-'.join(map(str, FAILED))}").exists()  # a failed cell has no results to keep
    assert pl.read_parquet(exported / "results.parquet").equals(pl.read_parquet(store["path"] / "results.parquet"))
    for dataset in DATASETS:
        assert significance(exported, dataset, "ndcg@10", "bpr").equals(significance(store["path"], dataset, "ndcg@10", "bpr"))
    kwargs = {"metrics": ["ndcg@10"], "baseline": "bpr", "references": False}
    ours = write_report(exported, tmp_path / "a", **kwargs)["markdown"].read_text()
    theirs = write_report(store["path"], tmp_path / "b", **kwargs)["markdown"].read_text()
    assert ours.replace(str(exported), "S") == theirs.replace(str(store["path"]), "S")
    export_store(store["path"], exported, metrics=["hr@10"])  # a second export replaces the first whole
    assert pl.read_parquet(exported / "cells/ml-100k-bpr-0/per_user_test.parquet").columns == ["user", "hr@10"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    with pytest.raises(ConfigError, match="onto itself"):
        export_store(exported, exported)


def test_bad_input_says_what_and_where(store: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_store(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no results.parquet"):
        load_store(tmp_path)
    (tmp_path / "results.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match="cannot be read"):
        load_store(tmp_path)
    pl.DataFrame({"cell_id": ["a"]}).write_parquet(tmp_path / "results.parquet")
    with pytest.raises(DataError, match="lacks the columns"):
        load_store(tmp_path)
    with pytest.raises(ConfigError, match="not in the store"):
        summarize(load_store(store["path"]), ["mrr@10"])
    with pytest.raises(ConfigError, match="baseline 'ease'"):
        significance(store["path"], "ml-100k", "hr@10", "ease")


def test_bar_figure_has_one_bar_per_model(store: dict) -> None:
    summary = summarize(load_store(store["path"]), ["hr@10", "ndcg@10"])
    fig = plots.metric_bars(summary, "amazon-beauty", ["hr@10", "ndcg@10"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    rows = summary.filter(pl.col("dataset") == "amazon-beauty")
    for ax, metric in zip(axes, ["hr@10", "ndcg@10"], strict=True):
        assert len(ax.patches) == len(MODELS)
        assert [p.get_height() for p in ax.patches] == pytest.approx(rows[metric].to_list())
        assert [bool(p.get_hatch()) for p in ax.patches] == rows["peer"].to_list()  # peers hatched, ours not


def test_pareto_front_is_the_undominated_set(store: dict) -> None:
    summary = summarize(load_store(store["path"]), ["ndcg@10"]).filter(pl.col("dataset") == "ml-100k")
    x, y = summary["train_seconds"].to_numpy(), summary["ndcg@10"].to_numpy()
    dominated = [any((x[j] <= x[i]) and (y[j] >= y[i]) and (x[j] < x[i] or y[j] > y[i]) for j in range(len(x)))
                 for i in range(len(x))]
    expected = sorted((x[i], y[i]) for i in range(len(x)) if not dominated[i])
    fig = plots.pareto_scatter(summary, "ml-100k", ["ndcg@10"])
    (front,) = [line for line in fig.axes[0].get_lines() if line.get_gid() == "pareto-front"]
    assert np.column_stack([front.get_xdata(), front.get_ydata()]) == pytest.approx(np.array(expected))
    assert plots.pareto_front(np.array([1.0, 1.0, 2.0, 0.5]), np.array([0.3, 0.3, 0.2, 0.1])).tolist() == [True, False, False, True]
    assert plots.pareto_front(np.array([1.0, 2.0]), np.array([0.9, 0.8]), higher_is_better=False).tolist() == [True, True]


def test_metric_at_k_has_one_line_per_model(store: dict) -> None:
    metrics = [f"{b}@{k}" for b in ("hr", "ndcg") for k in KS]
    summary = summarize(load_store(store["path"]), metrics)
    fig = plots.metric_at_k(summary, "ml-100k", ["hr", "ndcg"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    bpr = summary.filter((pl.col("dataset") == "ml-100k") & (pl.col("model") == "bpr"))
    for ax, base in zip(axes, ("hr", "ndcg"), strict=True):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == summary.filter(pl.col("dataset") == "ml-100k")["model"].to_list()
        bpr_line = next(line for line in lines if line.get_label() == "bpr")
        assert list(bpr_line.get_xdata()) == list(KS)
        assert list(bpr_line.get_ydata()) == pytest.approx([bpr[f"{base}@{k}"].item() for k in KS])


def test_training_curves_have_one_line_per_model_and_seed(store: dict) -> None:
    frame = load_store(store["path"])
    curves = load_training_curves(store["path"], frame, ["hr@10", "valid/ndcg@10"])
    assert curves.columns == ["dataset", "model", "seed", "epoch", "hr@10", "ndcg@10"]
    fig = plots.training_curves(curves, "amazon-beauty", ["hr@10", "ndcg@10"])
    with_epochs = sorted(f"{m} (seed {s})" for d, m, s in store["arrays"] if d == "amazon-beauty" and not MODELS[m][0])
    for ax in fig.axes:
        assert sorted(line.get_label() for line in ax.get_lines()) == with_epochs  # the peer wrote no metrics.csv


@pytest.mark.slow  # multi-second training: the slow step of CI runs it
def test_report_files(store: dict, report: dict[str, Path]) -> None:
    pngs = [path for name, path in report.items() if name not in ("markdown", "html")]
    assert sorted(p.name for p in pngs) == sorted(f"{d}-{kind}.png" for d in DATASETS for kind in ("bars", "pareto", "at-k", "curves"))
    for path in pngs:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    markdown, page = report["markdown"].read_text(), report["html"].read_text()
    for path in pngs:
        assert f"]({path.name})" in markdown
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert len(links) == len(pngs) and all(link.startswith("data:image/png;base64,") for link in links)
    assert not re.search(r"https?://|url\(|<link|<script", page)
    for model in MODELS:
        assert model in page and model in markdown
    assert "0.0744" in markdown and "ICLRec" in page  # the published table of amazon-beauty, with its protocol
    assert "full ranking" in markdown


def _table(markdown: str, dataset: str) -> tuple[list[str], list[list[str]]]:
    section = markdown.split(f"## {dataset}\n", 1)[1]
    lines = section.strip().split("\n\n", 1)[0].splitlines()
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return split[0], split[2:]


@pytest.mark.slow  # shares the multi-second report fixture with test_report_files
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_report_bolds_the_best_and_keeps_failed_cells_apart(store: dict, report: dict[str, Path], dataset: str) -> None:
    markdown = report["markdown"].read_text()
    headers, rows = _table(markdown, dataset)
    by_model = {row[0].removesuffix(" (peer)"): row for row in rows}
    assert set(by_model) == set(MODELS)
    for metric in ("hr@10", "ndcg@10"):
        means = {model: np.mean(v) for (d, model), v in _expected_means(store, metric).items() if d == dataset}
        best = max(means, key=means.get)
        column = headers.index(metric)
        assert [m for m, row in by_model.items() if row[column].startswith("**")] == [best]
        assert by_model[best][column].startswith(f"**{means[best]:.4f}")
    assert by_model["bpr"][headers.index("Δ ndcg@10 vs bpr")] == "baseline"
    assert "t p=" in by_model["als"][headers.index("Δ ndcg@10 vs bpr")]
    failed_section = markdown.split("## Failed cells", 1)[1]
    assert "CUDA out of memory" in failed_section and "amazon-beauty-als-1" in failed_section
    if dataset == "amazon-beauty":
        assert by_model["als"][headers.index("seeds")] == "1" and by_model["als"][headers.index("failed")] == "1"


def test_plot_run_and_plot_main(store: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = store["path"] / "cells" / "ml-100k-bpr-0"
    path = plots.plot_run(run_dir, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    fig = plots.run_curves(pl.read_csv(run_dir / "metrics.csv"))
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["loss", "validation hr", "validation ndcg"]
    assert plot_main([str(run_dir), "--out", str(tmp_path / "curves.txt")]) == 2
    assert "FILE.png" in capsys.readouterr().err
    assert plot_main([str(tmp_path / "missing-run")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert plot_main([str(store["path"] / "cells" / "ml-100k-implicit-als-0")]) == 2  # a peer: no metrics.csv
    assert "no metrics.csv" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.csv").write_text("epoch,loss\n")
    assert plot_main([str(tmp_path / "empty")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_report_main(store: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small"  # one dataset, so the success path draws few figures
    small.mkdir()
    (small / "cells").symlink_to(store["path"] / "cells")
    pl.read_parquet(store["path"] / "results.parquet").filter(pl.col("dataset") == "ml-100k").write_parquet(small / "results.parquet")
    assert report_main([str(small), "--out", str(tmp_path / "r"), "--metric", "hr@10", "--no-references",
                        "--export", str(tmp_path / "kept")]) == 0
    out = capsys.readouterr().out
    assert "# Benchmark report" in out and str(tmp_path / "r" / "report.html") in out
    assert f"recsys report {tmp_path / 'kept'}" in out
    assert pl.read_parquet(tmp_path / "kept/cells/ml-100k-bpr-0/per_user_test.parquet").columns == ["user", "hr@10"]
    assert "Published" not in out
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "results store not found" in capsys.readouterr().err
    assert report_main([str(store["path"]), "--out", str(tmp_path / "r2"), "--metric", "auc"]) == 2
    assert "not in the store" in capsys.readouterr().err
    assert report_main([str(store["path"]), "--out", str(tmp_path / "r3"), "--baseline", "ease"]) == 2
    assert "baseline 'ease'" in capsys.readouterr().err


def test_references_are_the_cited_numbers() -> None:
    cited = {(r.dataset, r.metric): r.value for r in REFERENCES}
    assert cited == {("amazon-beauty", "hr@10"): 0.0744, ("amazon-beauty", "ndcg@10"): 0.0403,
                     ("ml-1m", "ndcg@10"): 0.18, ("ml-100k", "rmse"): 0.93}
    assert all(r.protocol and r.source for r in REFERENCES)


# --- a CTR store: whole-split metrics (AUC, log loss), no per-user values ---------------------------------------
#: model -> peer, test AUC, test log loss (seed 0; each seed adds 0.001 to the AUC and takes 0.001 off the log loss)
CTR_MODELS = {"lr": (False, 0.70, 0.60), "deepfm": (False, 0.78, 0.56), "deepctr-deepfm": (True, 0.77, 0.55)}


@pytest.fixture(scope="module")
def ctr_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ml-100k x 3 CTR models x 3 seeds as the ctr grid writes them: test/auc and test/logloss, metrics.csv for ours."""
    root = tmp_path_factory.mktemp("ctr-store")
    rows = []
    for model, (peer, auc, logloss) in CTR_MODELS.items():
        for seed in range(3):
            cell_id = f"ctr-{model}-{seed}"
            (root / "cells" / cell_id).mkdir(parents=True)
            if not peer:
                pl.DataFrame({"epoch": [1, 2], "loss": [0.6, 0.5], "seconds": [1.0, 1.0], "auc": [auc - 0.02, auc],
                              "logloss": [logloss + 0.02, logloss]}).write_csv(root / "cells" / cell_id / "metrics.csv")
            rows.append({"cell_id": cell_id, "grid": "ctr", "dataset": "ml-100k", "model": model, "peer": peer,
                         "library": "deepctr-torch 0.3.0" if peer else "recsys 0.1.0", "seed": seed, "status": "ok",
                         "error": None, "code_version": "abc123", "train_seconds": 10.0 + seed, "peak_rss_mib": 400.0,
                         "run_dir": f"cells/{cell_id}", "test/auc": auc + 0.001 * seed, "test/logloss": logloss - 0.001 * seed})
    pl.DataFrame(rows).write_parquet(root / "results.parquet")
    return root


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_a_ctr_store_reports_auc_and_logloss_without_paired_tests(ctr_store: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert default_metrics(load_store(ctr_store)) == ["auc", "logloss"]
    paths = write_report(ctr_store, tmp_path / "report", baseline="lr")
    plots_drawn = sorted(name for name in paths if name not in ("markdown", "html"))
    assert plots_drawn == ["ml-100k-bars", "ml-100k-curves", "ml-100k-pareto"]  # no metric@K curves
    markdown = paths["markdown"].read_text()
    headers, rows = _table(markdown, "ml-100k")
    by_model = {row[0].removesuffix(" (peer)"): row for row in rows}
    assert headers[3:7] == ["auc", "logloss", "Δ auc vs lr", "Δ logloss vs lr"]
    assert [m for m, row in by_model.items() if row[3].startswith("**")] == ["deepfm"]  # highest AUC
    assert [m for m, row in by_model.items() if row[4].startswith("**")] == ["deepctr-deepfm"]  # lowest log loss
    assert by_model["deepfm"][3] == f"**{0.781:.4f} ± {0.001:.4f}**"
    assert by_model["lr"][5] == "baseline" and by_model["deepfm"][5] == by_model["deepctr-deepfm"][6] == "n/a"
    assert "Δ auc vs lr: n/a, no finished cell wrote per-user test values" in markdown
    assert "Surprise SVD" not in markdown and "Published numbers" not in markdown  # ml-100k's RMSE reference: not measured here
    assert by_model["deepctr-deepfm"][1] == "deepctr-torch 0.3.0" and by_model["deepctr-deepfm"][0].endswith("(peer)")
    assert report_main([str(ctr_store), "--out", str(tmp_path / "cli"), "--no-references"]) == 0  # default metrics
    assert "| auc | logloss |" in capsys.readouterr().out


def test_paired_tests_read_only_the_cells_that_measured_the_metric(store: dict, ctr_store: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"  # a cf grid and a ctr grid in one store, both on ml-100k
    (mixed / "cells").mkdir(parents=True)
    for root in (store["path"], ctr_store):
        for cell in (root / "cells").iterdir():
            (mixed / "cells" / cell.name).symlink_to(cell)
    frames = [pl.read_parquet(root / "results.parquet") for root in (store["path"], ctr_store)]
    pl.concat(frames, how="diagonal_relaxed").write_parquet(mixed / "results.parquet")
    assert default_metrics(load_store(mixed)) == ["hr@10", "ndcg@10", "auc", "logloss"]
    assert significance(mixed, "ml-100k", "ndcg@10", "bpr").equals(significance(store["path"], "ml-100k", "ndcg@10", "bpr"))
