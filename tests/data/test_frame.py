"""from_frame: inputs (pandas, polars, CSV, Parquet), id remapping, and each bad-input error."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from recsys.data.frame import from_frame, remap
from recsys.errors import DataError

ROWS = {"u": [7, 3, 7], "i": ["x", "y", "y"], "r": [1.0, 2.0, 3.0], "t": [5, 6, 7]}


def _same(data):
    assert data.users.ids.to_list() == [3, 7] and data.items.ids.to_list() == ["x", "y"]
    assert data.frame["user"].to_list() == [0, 1, 1] and data.frame["item"].to_list() == [1, 0, 1]


@pytest.mark.parametrize("kind", ["polars", "pandas", "csv", "parquet"])
def test_inputs(kind, tmp_path):
    frame = pl.DataFrame(ROWS)
    source = {"polars": frame, "pandas": frame.to_pandas()}.get(kind)
    if kind == "csv":
        source = tmp_path / "x.csv"
        frame.write_csv(source)
    elif kind == "parquet":
        source = tmp_path / "x.parquet"
        frame.write_parquet(source)
    data = from_frame(source, user_col="u", item_col="i", rating_col="r", time_col="t", name="n")
    _same(data)
    assert data.name == "n" and data.has_ratings and data.has_timestamps


def test_optional_columns():
    data = from_frame(pl.DataFrame({"user": [1, 2], "item": [3, 4]}))
    assert not data.has_ratings and not data.has_timestamps and data.ratings is None
    data = from_frame(pd.DataFrame({"user": [1], "item": [3], "rating": [5]}), time_col=None)
    assert data.has_ratings and not data.has_timestamps


def test_remap_paths_agree():
    dense, vocab = remap(pl.Series([50, 10, 50, 30]))
    sparse, vocab2 = remap(pl.Series([5 * 10**15, 10, 5 * 10**15, 30]))  # too wide for a lookup table
    assert dense.tolist() == sparse.tolist() == [2, 0, 2, 1]
    assert vocab.ids.to_list() == [10, 30, 50] and vocab2.ids.to_list() == [10, 30, 5 * 10**15]
    negative, vocab3 = remap(pl.Series([-4, 9, -4]))
    assert negative.tolist() == [0, 1, 0] and vocab3.ids.to_list() == [-4, 9]


def test_datetime_timestamps_become_seconds():
    frame = pl.DataFrame({"user": [1], "item": [1], "timestamp": [pd.Timestamp("1970-01-01 00:01:00")]})
    assert from_frame(frame).frame["timestamp"].to_list() == [60]


def test_missing_columns_named_with_present_ones(tmp_path):
    with pytest.raises(DataError) as error:
        from_frame(pl.DataFrame({"userId": [1], "item": [2]}))
    assert "['user']" in str(error.value) and "columns present: ['userId', 'item']" in str(error.value)
    with pytest.raises(DataError, match=r"\['score'\]"):
        from_frame(pl.DataFrame({"user": [1], "item": [2]}), rating_col="score")
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"columns present: \['a', 'b'\]"):
        from_frame(path)


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        from_frame(tmp_path / "absent.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unsupported file type"):
        from_frame(tmp_path / "x.json")
    with pytest.raises(DataError, match="cannot build interactions from list"):
        from_frame([1, 2])  # type: ignore[arg-type]


def test_non_numeric_and_nan_ratings_counted(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,1,4\n1,2,abc\n2,1,five\n2,2,NaN\n")
    with pytest.raises(DataError) as error:
        from_frame(path)
    message = str(error.value)
    assert "column 'rating' has 2 non-numeric value(s)" in message and "'abc'" in message
    assert "1 NaN value(s)" in message and "r.csv, column 'rating'" in message
    with pytest.raises(DataError, match="1 missing value"):
        from_frame(pl.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [None, 3.0]}))
    with pytest.raises(DataError, match="'timestamp' has 1 non-numeric"):
        from_frame(pl.DataFrame({"user": [1], "item": [1], "timestamp": ["yesterday"]}))


def test_missing_ids_and_empty():
    with pytest.raises(DataError, match="'item' has 1 missing id"):
        from_frame(pl.DataFrame({"user": [1, 2], "item": [1, None]}))
    with pytest.raises(DataError, match="no interactions"):
        from_frame(pl.DataFrame({"user": [], "item": []}))
