"""KeyedEmbedding (trainable table) and KeyedVectors (artifact): lookups by original id, parquet round trip, cosine neighbours."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.embeddings import KeyedEmbedding, KeyedVectors
from recsys.errors import DataError


def _table(freeze: bool = True, dtype: torch.dtype | None = None) -> KeyedEmbedding:
    matrix = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    return KeyedEmbedding.from_pretrained(matrix, ids=np.arange(1000, 1050)[::-1].copy(), freeze=freeze, dtype=dtype)


def test_lookup_by_original_ids_and_unknown_id():
    table = _table()
    torch.testing.assert_close(table(torch.tensor([1049, 1000])), table.weight[[0, 49]])
    with pytest.raises(DataError, match="not in the table, e.g. \\[7\\]"):
        table(torch.tensor([1000, 7]))
    with pytest.raises(DataError, match="once"):
        KeyedEmbedding.from_pretrained(np.zeros((2, 3)), ids=[4, 4])


def test_freeze_and_finetune():
    assert not _table(freeze=True).weight.requires_grad
    table = _table(freeze=False)
    table(torch.tensor([1001])).sum().backward()
    assert table.weight.grad.is_sparse


def test_numpy_and_parquet_round_trip(tmp_path):
    table = _table(dtype=torch.bfloat16)
    ids, vectors = table.to_numpy()
    assert ids[0] == 1049 and vectors.dtype == np.float32 and vectors.shape == (50, 8)
    path = table.to_keyed_vectors().to_parquet(tmp_path / "items.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["items.parquet"]
    assert pl.read_parquet(path).columns == ["key", "vector"]
    loaded = KeyedEmbedding.from_keyed_vectors(KeyedVectors.from_parquet(path))
    assert np.array_equal(loaded.to_numpy()[0], ids) and np.allclose(loaded.to_numpy()[1], vectors)
    assert not loaded.weight.requires_grad and KeyedEmbedding.from_keyed_vectors(KeyedVectors.from_parquet(path), freeze=False).weight.requires_grad


def test_string_keys_parquet_round_trip_and_integer_key_checks(tmp_path):
    wv = KeyedVectors(["a", "b"], torch.eye(2))
    back = KeyedVectors.from_parquet(wv.to_parquet(tmp_path / "wv.parquet"))
    assert back.index_to_key == ["a", "b"] and np.array_equal(back.vectors, wv.vectors)
    with pytest.raises(DataError, match="integer keys"):
        KeyedEmbedding.from_keyed_vectors(wv)
    with pytest.raises(DataError, match="columns"):
        KeyedVectors.from_parquet(pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "bad.parquet") or tmp_path / "bad.parquet")


def test_most_similar_matches_brute_force():
    table = _table()
    neighbors, scores = table.to_keyed_vectors().most_similar_ids(torch.tensor([1000, 1020, 1049]), topn=5, batch_size=2)
    unit = F.normalize(table.weight, dim=1)
    for q, query in enumerate([1000, 1020, 1049]):
        row = int(table.index(torch.tensor([query])))
        sims = unit @ unit[row]
        sims[row] = -2
        expected = sims.topk(5)
        assert neighbors[q].tolist() == table.ids[expected.indices].tolist()
        torch.testing.assert_close(scores[q], expected.values)
