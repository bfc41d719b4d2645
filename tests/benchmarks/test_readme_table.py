"""The README's measured table is generated from docs/results/ and matches it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsys.benchmarks import readme
from recsys.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_what_docs_results_say() -> None:
    assert readme.update(REPO / "README.md", REPO / "docs" / "results", check=True), "run `recsys bench readme`"


def _grid(path: Path) -> None:
    machine = json.dumps({"cpu": "CPU X", "cores": 2, "threads": 2, "gpu": None, "load_1min": 1.5})
    rows = [{"dataset": "d", "model": m, "seed": s, "status": "ok", "train_seconds": t, "test/hr@10": h,
             "test/ndcg@10": n, "machine": machine}
            for m, s, t, h, n in [("als", 0, 1.0, 0.2, 0.10), ("als", 1, 3.0, 0.4, 0.12), ("implicit-als", 0, 2.0, 0.1, 0.05),
                                  ("implicit-als", 1, 2.0, 0.3, 0.07), ("pop", 0, 0.1, 0.05, 0.02)]]
    rows.append({**rows[0], "seed": 2, "status": "failed", "train_seconds": None})
    (path / readme.GRID).parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_parquet(path / readme.GRID)


def test_grid_rows_give_means_stds_and_per_seed_ratio_ranges(tmp_path: Path) -> None:
    _grid(tmp_path)
    rows = dict(readme.grid_rows(pl.read_parquet(tmp_path / readme.GRID)))
    quality = rows["d: test HR@10 / NDCG@10, mean ± std over seeds"]
    assert "ALS 0.3000 ± 0.1414 / 0.1100 ± 0.0141 (2 seeds)" in quality  # the failed seed is not averaged
    assert "popularity 0.0500 / 0.0200 (1 seed)" in quality
    ratio = rows["d: ALS vs implicit ALS, fit time"]
    assert ratio.startswith("0.50x the peer's time (range 0.50x-1.50x over 2 seeds") and "NDCG@10 1.83x" in ratio


def test_update_rewrites_between_the_markers_and_check_sees_drift(tmp_path: Path) -> None:
    _grid(tmp_path)
    readme.record(tmp_path / "speed.json", [{"claim": "thing vs peer", "best": 2.0, "low": 1.5, "high": 2.0, "repeats": 3,
                                             "machine": "m", "command": "recsys bench x"}])
    readme.record(tmp_path / "speed.json", [{"claim": "thing vs peer", "best": 3.0, "low": 2.5, "high": 3.0, "repeats": 3,
                                             "machine": "m", "command": "recsys bench x"}])  # replaces the same claim
    assert len(json.loads((tmp_path / "speed.json").read_text())) == 1
    doc = tmp_path / "README.md"
    doc.write_text(f"intro\n{readme.BEGIN}\nold\n{readme.END}\noutro\n")
    assert not readme.update(doc, tmp_path, check=True)
    assert readme.update(doc, tmp_path)
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| thing vs peer | 3.00x (range 2.50x-3.00x over 3 repeats, m); `recsys bench x` |" in text
    assert readme.update(doc, tmp_path, check=True)
    doc.write_text("no markers")
    with pytest.raises(DataError, match="markers"):
        readme.update(doc, tmp_path)


def test_fit_time_ratios_need_a_quiet_machine(tmp_path: Path) -> None:
    _grid(tmp_path)
    frame = pl.read_parquet(tmp_path / readme.GRID)
    busy = frame.with_columns(pl.col("machine").str.replace('"load_1min": 1.5', '"load_1min": 7.5'))
    rows = dict(readme.grid_rows(busy))
    assert "d: ALS vs implicit ALS, fit time" not in rows and "d: test HR@10 / NDCG@10, mean ± std over seeds" in rows
    pop_busy = frame.with_columns(pl.when(pl.col("model") == "pop").then(pl.col("machine").str.replace('"load_1min": 1.5', '"load_1min": 7.5'))
                                  .otherwise(pl.col("machine")).alias("machine"))
    assert "d: ALS vs implicit ALS, fit time" in dict(readme.grid_rows(pop_busy))  # another model's load does not matter


def test_grid_machine_names_every_cpu_the_cells_ran_on() -> None:
    import json

    import polars as pl

    from recsys.benchmarks.readme import _machine

    fact = {"cores": 2, "threads": 2, "gpu": None, "load_1min": 1.0}
    frame = pl.DataFrame({"machine": [json.dumps({**fact, "cpu": "A"}), json.dumps({**fact, "cpu": "B"}),
                                      json.dumps({**fact, "cpu": "A", "load_1min": 3.0})]})
    assert _machine(frame) == "A (2 cells) or B (1 cells), 2 cores, 2 threads, no GPU, load 1.0-3.0"
    assert _machine(frame.head(1)).startswith("A, 2 cores")
