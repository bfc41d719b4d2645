"""Memory reducers: quotient-remainder, mixed dimensions, frequency-capped vocabularies."""

from __future__ import annotations

import pytest
import torch

from recsys.embeddings import EmbeddingField, KeyedJagged, MixedDimEmbeddingCollection, QREmbedding, power_law_dims
from recsys.errors import ConfigError, DataError


@pytest.mark.parametrize(("operation", "dim"), [("mult", 8), ("add", 8), ("concat", 8)])
def test_qr_shapes_values_and_sparse_gradients(operation, dim):
    qr = QREmbedding(1000, dim, num_buckets=32, operation=operation, generator=torch.Generator().manual_seed(0))
    assert qr.quotient.shape[0] == 32 and qr.remainder.shape[0] == 32
    ids = torch.tensor([[0, 33], [999, 33]])
    out = qr(ids)
    assert out.shape == (2, 2, dim)
    q, r = qr.quotient[33 // 32], qr.remainder[33 % 32]
    expected = {"mult": q * r, "add": q + r, "concat": torch.cat([q, r])}[operation]
    torch.testing.assert_close(out[0, 1], expected)
    out.sum().backward()
    assert qr.quotient.grad.is_sparse and qr.remainder.grad.is_sparse
    assert set(qr.quotient.grad.coalesce().indices()[0].tolist()) == {0, 1, 31}
    assert not torch.equal(qr(torch.tensor([1])), qr(torch.tensor([2])))  # distinct ids stay distinct


def test_qr_bad_input():
    qr = QREmbedding(100, 4, num_buckets=10)
    with pytest.raises(DataError, match="outside \\[0, 100\\)"):
        qr(torch.tensor([100]))
    with pytest.raises(DataError, match="torch.long"):
        qr(torch.tensor([1.0]))
    with pytest.raises(ConfigError, match="even"):
        QREmbedding(100, 5, num_buckets=10, operation="concat")


def test_mixed_dim_shapes_gradients_and_order():
    fields = [EmbeddingField("a", 100, 16), EmbeddingField("b", 10, 4), EmbeddingField("c", 50, 8), EmbeddingField("d", 6, 4, pooling="sum")]
    mixed = MixedDimEmbeddingCollection(fields, embedding_dim=16, generator=torch.Generator().manual_seed(0))
    assert sorted(mixed.projections) == ["4", "8"]
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = mixed(ids, KeyedJagged.from_lists({"d": [[1, 2], [3]]}))
    assert out.shape == (2, 4, 16)
    b = mixed.collection.field_weight("b")[[2, 5]]
    torch.testing.assert_close(out[:, 1], mixed.projections["4"](b))  # declaration order kept
    torch.testing.assert_close(out[:, 0], mixed.collection.field_weight("a")[[1, 4]])
    out.pow(2).sum().backward()
    assert mixed.collection.tables["4"].weight.grad.is_sparse
    assert mixed.projections["8"].weight.grad is not None and not mixed.projections["8"].weight.grad.is_sparse
    params = sum(p.numel() for p in mixed.parameters())
    assert params < 100 * 16 + 16 * 16 + 16 * 50 + 16 * 6 + 16 * 8 + 16 * 4


def test_power_law_dims_and_from_sizes():
    dims = power_law_dims([10, 10_000, 1_000_000], embedding_dim=64, alpha=0.3)
    assert dims[-1] == 64 and dims[0] < dims[1] < 64
    mixed = MixedDimEmbeddingCollection.from_sizes([EmbeddingField("x", 10, 64), EmbeddingField("y", 10**5, 64)], 64)
    assert mixed(torch.tensor([[1, 2]])).shape == (1, 2, 64)
