"""CTR tables from libsvm / libFM files: field kinds, parts, splits, the feature pipeline, and one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys.data import CTRBatches, field_features, file_split, leave_one_out, load_ctr_files, random_split
from recsys.data.ctr_files import default_name
from recsys.errors import ConfigError, DataError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_libfm_fields_get_their_kind_from_the_data(tmp_path: Path) -> None:
    path = write(tmp_path, "train.libfm", "# header\n1 0:3:1 1:7:1 1:8:1 2:20:31.5\n\n-1 0:4:1 1:7:1\n+1 1:9:1 2:20:18\n")
    table = load_ctr_files(path, format="libfm", fields=["user", "tags", "age"])
    assert table.fields == {"user": "categorical", "tags": "multi", "age": "numeric"}
    assert table.frame.rows() == [(1.0, 3, [7, 8], 31.5), (0.0, 4, [7], None), (1.0, None, [9], 18.0)]
    assert table.num_interactions == 3 and table.num_users == table.num_items == 0 and not table.has_parts
    assert table.labels.tolist() == [1.0, 0.0, 1.0]  # label > 0 is a click: -1/+1 and 0/1 files both work


def test_libsvm_fields_are_positions(tmp_path: Path) -> None:
    table = load_ctr_files(write(tmp_path, "clicks.txt", "1 5:1 100:1\n0 6:1 101:1\n"), format="libsvm")
    assert table.fields == {"field_0": "categorical", "field_1": "categorical"}
    assert table.frame["field_1"].to_list() == [100, 101] and table.name == "clicks"


def test_given_files_keep_their_parts_and_the_split_keeps_them(tmp_path: Path) -> None:
    rows = "".join(f"{i % 2} 0:{i % 5}:1 1:{10 + i % 3}:1\n" for i in range(20))
    paths = [write(tmp_path, f"shop.{part}.libfm", rows) for part in ("train", "valid", "test")]
    table = load_ctr_files(*paths, format="libfm")
    assert table.has_parts and table.name == "shop"
    split = file_split(table, seed=0)
    assert [p.num_interactions for p in split] == [20, 20, 20]
    assert split.train.frame.columns == ["label", "field_0", "field_1"]  # the part marker is gone
    history = split.train.concat(split.valid)
    assert history.num_interactions == 40 and history.fields == table.fields
    with pytest.raises(DataError, match="split=files"):
        random_split(table)  # would mix the files


def test_without_a_validation_file_train_rows_are_carved_out(tmp_path: Path) -> None:
    rows = "".join(f"{i % 2} 0:{i}:1\n" for i in range(50))
    table = load_ctr_files(write(tmp_path, "train.txt", rows), test=write(tmp_path, "test.txt", rows), format="libfm")
    split = file_split(table, valid_ratio=0.2, seed=3)
    assert (split.train.num_interactions, split.valid.num_interactions, split.test.num_interactions) == (40, 10, 50)
    assert set(split.train.frame["field_0"]).isdisjoint(split.valid.frame["field_0"])
    again = file_split(table, valid_ratio=0.2, seed=3)
    assert again.valid.frame.equals(split.valid.frame)  # seeded


def test_field_features_feed_the_ctr_batches(tmp_path: Path) -> None:
    path = write(tmp_path, "train.libfm", "1 0:3:1 1:7:1 1:8:1\n0 0:4:1\n1 0:3:1 1:9:1\n")
    table = load_ctr_files(path, format="libfm", fields=["user", "tags"])
    features = field_features(table.fields).fit(table)
    batch = next(iter(CTRBatches(table, features, batch_size=8, shuffle=False)))
    assert batch["labels"].tolist() == [1.0, 0.0, 1.0]
    assert batch["ids"].tolist() == [[0], [1], [0]]  # user 3 (seen twice) is row 0
    assert batch["bag_offsets"].tolist() == [0, 2, 2, 3]
    assert [f.name for f in features.field_specs()] == ["user", "tags"]


def test_a_single_file_splits_at_random_but_not_by_user(tmp_path: Path) -> None:
    table = load_ctr_files(write(tmp_path, "all.libfm", "".join(f"{i % 2} 0:{i}:1\n" for i in range(10))))
    assert [p.num_interactions for p in random_split(table, (0.6, 0.2, 0.2), seed=0)] == [6, 2, 2]
    with pytest.raises(DataError, match="split=random"):
        leave_one_out(table)
    with pytest.raises(ConfigError, match="single file"):
        file_split(table)


def test_default_names() -> None:
    assert default_name("/d/frappe/frappe.train.libfm") == "frappe"
    assert default_name("/d/criteo/train.txt") == "criteo"
    assert default_name("/d/x/Avazu_training.libsvm") == "Avazu"


@pytest.mark.parametrize(
    ("text", "kwargs", "message", "line"),
    [
        ("1 0:1:1\n0 0:2:1 1:x:1\n", {}, "non-numeric", "line 2: '1:x:1'"),  # wrong field syntax
        ("1 0:1:1\n0 0:2:1 1:2\n", {}, "not field:feature:value", "line 2: '1:2'"),
        ("1 0:1\n0 1:1\n", {}, "tokens are 'label feature:value", "dataset=libsvm"),  # the other form
        ("yes 0:1:1\n", {}, "numeric label", "line 1"),
        ("1 0:1:1\n\n0 0:5382:1\n", {"num_features": 5382}, "feature id(s) out of range [0, 5382)", "line 3: '0:5382:1'"),
        ("1 0:-4:1\n", {}, "out of range >= 0", "line 1"),
        ("1 2:1:1\n", {"fields": ["user", "item"]}, "field id(s) out of range [0, 2)", "line 1: '2:1:1'"),
        ("1 0:1:1 0:2:0.5\n", {}, "weighted multi-valued", "line 1: '0:2:0.5'"),
        ("\n# nothing\n", {}, "no data lines", "train.libfm"),
        ("", {}, "empty", "train.libfm"),
    ],
)
def test_bad_libfm_files_give_one_clear_error(tmp_path: Path, text: str, kwargs: dict, message: str, line: str) -> None:
    with pytest.raises(DataError) as info:
        load_ctr_files(write(tmp_path, "train.libfm", text), format="libfm", **kwargs)
    assert message in str(info.value) and line in str(info.value) and "fix:" in str(info.value)


def test_libsvm_rows_must_hold_one_feature_per_field(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 2: '1 features'.*") as info:
        load_ctr_files(write(tmp_path, "train.libsvm", "1 0:1 9:1\n0 1:1\n"), format="libsvm")
    assert "field:feature:value" in str(info.value)  # the fix names the form that allows it


def test_an_empty_test_file_is_an_empty_split(tmp_path: Path) -> None:
    train = write(tmp_path, "train.libfm", "1 0:1:1\n0 0:2:1\n")
    test = write(tmp_path, "test.libfm", "# no rows\n")
    with pytest.raises(DataError, match="no data lines") as info:
        load_ctr_files(train, test=test)
    assert "test.libfm" in str(info.value)


def test_new_files_are_read_with_the_runs_kinds(tmp_path: Path) -> None:
    train = load_ctr_files(write(tmp_path, "train.libfm", "1 0:3:1 1:7:1 1:8:1\n"), fields=["user", "tags"])
    new = load_ctr_files(write(tmp_path, "new.libfm", "0 0:3:1 1:7:1\n"), fields=["user", "tags"], kinds=train.fields)
    assert new.fields == train.fields and new.frame["tags"].to_list() == [[7]]  # one tag, still a list
    with pytest.raises(DataError, match=r"\['user'\] are \['multi'\] here but \['categorical'\]"):
        load_ctr_files(write(tmp_path, "bad.libfm", "0 0:3:1 0:4:1\n"), fields=["user", "tags"], kinds=train.fields)


def test_labels_and_frames_are_vectorized_views(tmp_path: Path) -> None:
    rows = "".join(f"{i % 2} 0:{i % 100}:1 1:{i % 7}:1\n" for i in range(20_000))
    table = load_ctr_files(write(tmp_path, "big.libfm", rows), format="libfm")
    assert table.num_interactions == 20_000 and table.frame["field_0"].dtype == pl.Int64
    assert torch.equal(table.labels[:4], torch.tensor([0.0, 1.0, 0.0, 1.0]))
