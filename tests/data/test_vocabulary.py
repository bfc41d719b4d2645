"""Vocabulary: sorted ids, counted ids (from_counts, OOV), round trips, unknown ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from recsys.data.vocabulary import Vocabulary
from recsys.errors import ConfigError, DataError


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


def test_from_counts_caps_and_maps_oov_like_the_frequency_vocabulary():
    ids = torch.tensor([5, 5, 5, 8, 8, 1, 2, 2, 9])
    vocab = Vocabulary.from_counts(ids, max_size=3)
    assert vocab.ids.to_list() == [5, 2, 8] and vocab.counts.tolist() == [3, 2, 2]
    assert vocab.to_index(torch.tensor([[8, 1], [42, 5]]), unknown="oov").tolist() == [[2, 3], [3, 0]]
    assert vocab.oov_index + 1 == 4 and vocab.coverage == pytest.approx(7 / 9)
    by_counts = Vocabulary.from_counts(torch.tensor([4, 7, 4]), min_count=3, counts=torch.tensor([2, 5, 2]))
    assert by_counts.ids.to_list() == [7, 4] and by_counts.counts.tolist() == [5, 4]
    assert Vocabulary.from_counts(ids, max_size=0).to_index(ids, unknown="oov").tolist() == [0] * 9
    assert Vocabulary.from_dict(vocab.to_dict()).counts.tolist() == [3, 2, 2]
    with pytest.raises(ConfigError, match="min_count"):
        Vocabulary.from_counts(ids, min_count=0)
