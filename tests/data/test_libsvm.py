"""libsvm / libFM / libffm reader on small files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys.data.ctr_batches import FeatureBatches
from recsys.data.libsvm import read_libsvm
from recsys.errors import DataError
from recsys.models.fm import FM


def write(tmp_path: Path, text: str, name: str = "data.libfm") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_labels_indices_values_and_row_offsets(tmp_path: Path) -> None:
    data = read_libsvm(write(tmp_path, "# comment\n1 0:1 7:0.5\n\n0  3:1\t9:2 12:1\n-1\n"))
    assert data.labels.tolist() == [1.0, 0.0, 0.0]
    assert data.indices.tolist() == [0, 7, 3, 9, 12]
    assert data.values.tolist() == [1.0, 0.5, 1.0, 2.0, 1.0]
    assert data.offsets.tolist() == [0, 2, 5, 5] and data.fields is None


def test_reads_libffm_fields(tmp_path: Path) -> None:
    data = read_libsvm(write(tmp_path, "1 0:5:1 1:9:1\n0 0:6:1 1:8:1\n"))
    assert data.fields.tolist() == [0, 1, 0, 1] and data.indices.tolist() == [5, 9, 6, 8]


@pytest.mark.parametrize(("text", "message"), [("yes 1:1\n", "numeric label"), ("1 1:1 2\n", "':'-separated"),
                                               ("1 a:1\n", "non-numeric"), ("\n#only\n", "no data lines")])
def test_malformed_files_raise_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_libsvm(write(tmp_path, text))


def test_field_encoding_maps_unseen_indices_to_oov_and_feeds_a_model(tmp_path: Path) -> None:
    train = read_libsvm(write(tmp_path, "1 0:1 10:1\n0 1:1 11:1\n1 2:1 10:1\n", "train.libfm"))
    test = read_libsvm(write(tmp_path, "0 2:1 13:1\n", "test.libfm"))
    encoded, fields = train.encode()
    assert encoded.ids.tolist() == [[0, 0], [1, 1], [2, 0]] and [f.num_embeddings for f in fields] == [3, 2]
    assert test.encode(reference=train)[0].ids.tolist() == [[2, 2]]  # 13 is outside the training range of field 1
    model = FM(embedding_dim=2)
    model.build(fields)
    batch = next(iter(FeatureBatches(encoded, train.labels, batch_size=8, shuffle=False)))
    assert model.loss(batch).isfinite()
    with pytest.raises(DataError, match="same number"):
        read_libsvm(write(tmp_path, "1 0:1\n0 1:1 2:1\n")).field_ids()
