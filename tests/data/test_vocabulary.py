"""Vocabulary: sorted ids, round trips, unknown ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from recsys.data.vocabulary import Vocabulary
from recsys.errors import DataError


def test_from_values_sorts_and_round_trips():
    vocab = Vocabulary.from_values(pl.Series([30, 10, 20, 10]))
    assert vocab.ids.to_list() == [10, 20, 30] and len(vocab) == 3
    for originals in ([30, 10], np.array([30, 10]), pl.Series([30, 10]), pd.Series([30, 10])):
        index = vocab.to_index(originals)
        assert index.dtype == torch.long and index.tolist() == [2, 0]
    assert vocab.to_original(torch.tensor([2, 0])) == [30, 10]
    assert vocab.to_original(np.array([1])) == [20]
    assert vocab.to_original([0, 1, 2]) == [10, 20, 30]


def test_string_ids():
    vocab = Vocabulary.from_values(pl.Series(["b", "a", "c"]))
    assert vocab.to_original(vocab.to_index(["c", "a"])) == ["c", "a"]


def test_unknown_ids_named_up_to_five():
    vocab = Vocabulary(pl.Series([1, 2, 3]))
    with pytest.raises(DataError) as error:
        vocab.to_index([1, 7, 8, 9, 10, 11, 12])
    message = str(error.value)
    assert "6 unknown id(s)" in message and "[7, 8, 9, 10, 11]" in message and "12" not in message.split("e.g.")[1].split("\n")[0]
    with pytest.raises(DataError, match="unknown"):
        vocab.to_index(["x"])


def test_duplicate_ids_rejected_and_out_of_range_index():
    with pytest.raises(DataError, match="not unique"):
        Vocabulary(pl.Series([1, 1, 2]))
    with pytest.raises(DataError, match="out of range"):
        Vocabulary(pl.Series([1, 2])).to_original([2])
