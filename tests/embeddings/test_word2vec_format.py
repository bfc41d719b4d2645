"""``KeyedVectors.load_word2vec_format`` on bad files: non-finite values, wrong ``binary=``, wrong widths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.errors import DataError


@pytest.fixture
def wv() -> KeyedVectors:
    return KeyedVectors(["a", "b", "c"], torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, 0.25], [-3.0, 1.5, 0.0]]))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_text_with_non_finite_value_names_the_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "v.txt"
    path.write_text(f"3 2\na 1 2\n\nb {value} 1\nc 1 1\n")  # the blank line 3 still counts
    with pytest.raises(DataError, match="NaN or inf") as error:
        KeyedVectors.load_word2vec_format(path)
    assert error.value.where == f"{path}, line 4 (key 'b')"


def test_binary_with_non_finite_value_names_the_vector(tmp_path: Path, wv: KeyedVectors) -> None:
    wv.table[2, 1] = float("nan")
    path = wv.save_word2vec_format(tmp_path / "v.bin", binary=True)
    with pytest.raises(DataError, match="NaN or inf") as error:
        KeyedVectors.load_word2vec_format(path, binary=True)
    assert error.value.where == f"{path}, vector 3 (key 'c')"


def test_binary_true_on_a_text_file(tmp_path: Path, wv: KeyedVectors) -> None:
    path = wv.save_word2vec_format(tmp_path / "v.txt")
    with pytest.raises(DataError, match="text, not binary") as error:
        KeyedVectors.load_word2vec_format(path, binary=True)
    assert "binary=False" in error.value.fix
    assert np.array_equal(KeyedVectors.load_word2vec_format(path).vectors, wv.vectors)


def test_text_mode_on_a_binary_file(tmp_path: Path) -> None:
    path = KeyedVectors(["a", "b"], torch.tensor([[1.0, 0.0], [0.0, 2.0]])).save_word2vec_format(tmp_path / "v.bin", binary=True)
    with pytest.raises(DataError, match="binary"):
        KeyedVectors.load_word2vec_format(path)
    assert KeyedVectors.load_word2vec_format(path, binary=True).vectors.tolist() == [[1.0, 0.0], [0.0, 2.0]]


@pytest.mark.parametrize(
    "text, match, where",
    [
        ("2 3\na 1 2 3\nb 1 2\n", r"line 3 has 2 values, the header says 3", "line 3"),
        ("2 2\na 1 2 3\nb 1 2\n", r"line 2 has 3 values, the header says 2", "line 2"),
        ("2 2\na 1 2\nb 1 x\n", "not a number", "line 3"),
        ("2\na 1 2\n", "bad header", "line 1"),
        ("3 2\na 1 2\nb 1 2\n", "header says 3 vectors, found 2", ""),
    ],
)
def test_text_with_wrong_header_or_width(tmp_path: Path, text: str, match: str, where: str) -> None:
    path = tmp_path / "v.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as error:
        KeyedVectors.load_word2vec_format(path)
    assert error.value.where.endswith(where)


@pytest.mark.parametrize("header", [b"3 2\n", b"3 4\n", b"4 3\n", b"2 3\n"])
def test_binary_with_a_wrong_header(tmp_path: Path, wv: KeyedVectors, header: bytes) -> None:
    good = wv.save_word2vec_format(tmp_path / "good.bin", binary=True).read_bytes()
    path = tmp_path / "v.bin"
    path.write_bytes(header + good.split(b"\n", 1)[1])
    with pytest.raises(DataError, match="header|ends inside|UTF-8|bytes left|NaN or inf"):
        KeyedVectors.load_word2vec_format(path, binary=True)


def test_round_trips_still_work(tmp_path: Path, wv: KeyedVectors) -> None:
    for binary in (False, True):
        path = wv.save_word2vec_format(tmp_path / f"v{binary}", binary=binary)
        back = KeyedVectors.load_word2vec_format(path, binary=binary)
        assert back.index_to_key == wv.index_to_key and np.allclose(back.vectors, wv.vectors)
