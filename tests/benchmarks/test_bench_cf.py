"""``recsys bench cf`` on a user's own file: the grid's cells for it, named after the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys.benchmarks import cf


def test_a_users_file_becomes_a_dataset_named_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "Beauty.csv"  # the name of a tuned dataset's file: the table must not claim to be amazon-beauty
    pl.DataFrame({"uid": [1, 1, 2], "sku": [5, 6, 5]}).write_csv(file)
    grid = cf.load_grid(cf._grid_file())
    parser = cf.argparse.ArgumentParser()
    name = cf._add_file(grid, str(file), ["user_col=uid", "item_col=sku", "time_col=null"], parser)
    assert name == "Beauty" and "amazon-beauty" in grid.datasets
    cells = grid.cells(datasets=[name], models=["pop", "als"], seeds=[0])
    assert {c.dataset for c in cells} == {"Beauty"} and {c.model for c in cells} == {"pop", "als"}
    for cell in cells:
        assert f"dataset.name={file.resolve()}" in cell.overrides and "dataset=file" in cell.overrides
        assert "dataset.user_col=uid" in cell.overrides and "dataset.time_col=null" in cell.overrides
        assert not any("alpha" in o for o in cell.overrides)  # no per-dataset tuning of ml-100k or Beauty


@pytest.mark.parametrize("argv, message", [
    (["--file", "nowhere.csv"], "no such file"),
    (["--file", "__FILE__", "--file-option", "user_col"], "expected KEY=VALUE"),
])
def test_bad_file_arguments_exit_2(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "x.csv"
    file.write_text("user,item\n1,2\n")
    with pytest.raises(SystemExit) as stop:
        cf.main([str(file) if a == "__FILE__" else a for a in argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
