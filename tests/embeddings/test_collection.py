"""EmbeddingCollection: fused equals naive, pooling equals hand-computed, bad input fails loudly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys.embeddings import EmbeddingCollection, EmbeddingField, KeyedJagged, hash_ids
from recsys.errors import ConfigError, DataError

SIZES = [7, 50, 3, 20]


def _collection(dim: int = 8, **kwargs) -> EmbeddingCollection:
    fields = [EmbeddingField(f"f{i}", n, dim) for i, n in enumerate(SIZES)]
    return EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0), **kwargs)


def _ids(batch: int = 32, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (batch,), generator=gen) for n in SIZES], dim=1)


def test_fused_matches_naive_forward_and_gradients():
    fused = _collection()
    naive = nn.ModuleList(nn.Embedding.from_pretrained(fused.field_weight(f"f{i}").detach().clone(), freeze=False) for i in range(len(SIZES)))
    ids = _ids()
    target = torch.randn(32, len(SIZES), 8, generator=torch.Generator().manual_seed(2))
    out_fused = fused(ids)
    out_naive = torch.stack([table(ids[:, i]) for i, table in enumerate(naive)], dim=1)
    torch.testing.assert_close(out_fused, out_naive, atol=1e-6, rtol=0)
    (out_fused * target).sum().backward()
    (out_naive * target).sum().backward()
    grad = fused.tables["8"].weight.grad
    assert grad.is_sparse
    dense = grad.to_dense()
    for i, table in enumerate(naive):
        start = fused.tables["8"].row_offsets[f"f{i}"]
        torch.testing.assert_close(dense[start : start + SIZES[i]], table.weight.grad, atol=1e-6, rtol=0)


def test_one_lookup_call_per_batch(monkeypatch):
    calls = []
    original = torch.nn.functional.embedding
    monkeypatch.setattr(torch.nn.functional, "embedding", lambda *a, **k: calls.append(1) or original(*a, **k))
    _collection()(_ids())
    assert len(calls) == 1


def test_pooling_matches_hand_computed_sum_mean_and_weights():
    fields = [
        EmbeddingField("user", 5, 4),
        EmbeddingField("tags", 6, 4, pooling="sum", weighted=True),
        EmbeddingField("genres", 4, 4, pooling="mean", padding_idx=0),
    ]
    ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    bags = KeyedJagged.from_lists(
        {"tags": [[1, 2, 2], [], [5]], "genres": [[1, 0, 3], [2], [0]]},
        weights={"tags": [[0.5, 1.0, 2.0], [], [3.0]], "genres": [[1.0, 1.0, 1.0], [1.0], [1.0]]},
    )
    out = ec(torch.tensor([[0], [1], [4]]), bags)  # (B, F, D)
    tags, genres = ec.field_weight("tags"), ec.field_weight("genres")
    expected_tags = torch.stack([0.5 * tags[1] + 1.0 * tags[2] + 2.0 * tags[2], torch.zeros(4), 3.0 * tags[5]])
    expected_genres = torch.stack([(genres[1] + genres[3]) / 2, genres[2], torch.zeros(4)])  # padding left out of the mean
    torch.testing.assert_close(out[:, 1], expected_tags)
    torch.testing.assert_close(out[:, 2], expected_genres)
    torch.testing.assert_close(out[:, 0], ec.field_weight("user")[[0, 1, 4]])
    out.sum().backward()
    grad = ec.tables["4"].weight.grad.to_dense()
    assert grad[0].abs().sum() == 0  # shared padding row gets nothing


def test_mixed_dims_grouped_and_declaration_order():
    fields = [EmbeddingField("a", 5, 4), EmbeddingField("b", 6, 8), EmbeddingField("c", 7, 4), EmbeddingField("d", 3, 8, pooling="sum")]
    ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    groups = ec.forward_grouped(torch.tensor([[1, 2, 3], [4, 5, 6]]), KeyedJagged.from_lists({"d": [[0, 1], [2]]}))
    assert groups[4].shape == (2, 2, 4) and groups[8].shape == (2, 2, 8)
    torch.testing.assert_close(groups[4][:, 1], ec.field_weight("c")[[3, 6]])
    torch.testing.assert_close(groups[8][:, 0], ec.field_weight("b")[[2, 5]])
    torch.testing.assert_close(groups[8][:, 1], ec.field_weight("d")[[0, 2]] + torch.stack([ec.field_weight("d")[1], torch.zeros(8)]))
    with pytest.raises(ConfigError, match="several embedding dims"):
        ec(torch.tensor([[1, 2, 3]]), KeyedJagged.from_lists({"d": [[0]]}))


def test_oov_row_hashing_and_padding():
    fields = [
        EmbeddingField("city", 10, 4, oov_row=True),
        EmbeddingField("raw", 16, 4, hashing=True),
        EmbeddingField("item", 5, 4, padding_idx=0),
    ]
    ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[3, 10**12, 0], [99, -7, 2]])
    out = ec(ids)
    torch.testing.assert_close(out[1, 0], ec.field_weight("city")[10])  # OOV row
    buckets = hash_ids(torch.tensor([10**12, -7]), 16)
    torch.testing.assert_close(out[:, 1], ec.field_weight("raw")[buckets])
    assert out[0, 2].abs().sum() == 0


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (torch.tensor([[0, 50, 0, 0]]), "id 50 is outside \\[0, 50\\) for field 'f1'"),
        (torch.tensor([[0, 0, -1, 0]]), "id -1 is outside .* field 'f2'"),
        (torch.tensor([[0.0, 1.0, 0.0, 0.0]]), "must be torch.long"),
        (torch.tensor([[0, 1, 2]]), "ids must be \\(B, 4\\)"),
    ],
)
def test_bad_ids_raise_clear_errors(ids, match):
    with pytest.raises(DataError, match=match):
        _collection()(ids)


def test_bad_bags_raise_clear_errors():
    ec = EmbeddingCollection([EmbeddingField("tags", 5, 4, pooling="sum"), EmbeddingField("g", 3, 4, pooling="mean")])
    good = KeyedJagged.from_lists({"tags": [[1], [2, 3]], "g": [[0], [2]]})
    assert ec(bags=good).shape == (2, 2, 4)
    with pytest.raises(DataError, match="offsets has 4 entries"):
        ec(bags=KeyedJagged(good.keys, good.values, good.offsets[:4]))
    with pytest.raises(DataError, match="end at len\\(values\\)"):
        ec(bags=KeyedJagged(good.keys, good.values, torch.tensor([0, 1, 3, 4, 9])))
    with pytest.raises(DataError, match="id 3 is outside \\[0, 3\\) for field 'g'"):
        ec(bags=KeyedJagged.from_lists({"tags": [[1], [2]], "g": [[0], [3]]}))
    with pytest.raises(DataError, match="bag keys"):
        ec(bags=KeyedJagged.from_lists({"g": [[0]], "tags": [[1]]}))
    with pytest.raises(DataError, match="torch.long"):
        ec(bags=KeyedJagged(good.keys, good.values.int(), good.offsets))


def test_config_errors():
    with pytest.raises(ConfigError, match="duplicate"):
        EmbeddingCollection([EmbeddingField("a", 3, 4), EmbeddingField("a", 3, 4)])
    with pytest.raises(ConfigError, match="padding_idx"):
        EmbeddingField("a", 3, 4, padding_idx=3)
    with pytest.raises(ConfigError, match="dtype"):
        EmbeddingCollection([EmbeddingField("a", 3, 4)], dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_tables_forward_backward(dtype):
    fields = [EmbeddingField("a", 30, 8), EmbeddingField("t", 10, 8, pooling="mean")]
    ec = EmbeddingCollection(fields, dtype=dtype, generator=torch.Generator().manual_seed(0))
    ref = EmbeddingCollection(fields, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    ids, bags = torch.tensor([[1], [29]]), KeyedJagged.from_lists({"t": [[1, 2], [9]]})
    out = ec(ids, bags)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref(ids, bags), atol=1e-3, rtol=1e-2)
    out.float().sum().backward()
    assert ec.tables["8"].weight.grad.dtype == dtype


def test_export_keyed_by_ids():
    ec = _collection()
    table = ec.export("f1", ids=torch.arange(100, 150))
    torch.testing.assert_close(table(torch.tensor([100, 149])), ec.field_weight("f1")[[0, 49]].detach())


def test_one_mean_field_with_padding_pools_like_the_hand_computed_mean():
    # one multi-valued field, mean-pooled: one embedding_bag ("sum" mode, scaled per bag), padding left out
    fields = [EmbeddingField("user", 5, 3, padding_idx=0), EmbeddingField("genres", 4, 3, pooling="mean", padding_idx=0)]
    ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    calls = []
    original = torch.nn.functional.embedding_bag
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "embedding_bag", lambda *a, **k: calls.append(k["mode"]) or original(*a, **k))
        out = ec(torch.tensor([[0], [1], [4]]), KeyedJagged.from_lists({"genres": [[1, 0, 3], [2], [0]]}))
    assert calls == ["sum"]
    user, genres = ec.field_weight("user"), ec.field_weight("genres")
    torch.testing.assert_close(out[:, 0], torch.stack([torch.zeros(3), user[1], user[4]]))
    torch.testing.assert_close(out[:, 1], torch.stack([(genres[1] + genres[3]) / 2, genres[2], torch.zeros(3)]))
    target = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(1))
    (out * target).sum().backward()
    grad = ec.tables["3"].weight.grad.to_dense()
    torch.testing.assert_close(grad[ec.tables["3"].row_offsets["genres"] + 1], target[0, 1] / 2)
    torch.testing.assert_close(grad[ec.tables["3"].row_offsets["user"] + 4], target[2, 0])
    assert grad[0].abs().sum() == 0
    with pytest.raises(DataError, match="id 4 is outside \\[0, 4\\) for field 'genres'"):
        ec(torch.tensor([[1]]), KeyedJagged.from_lists({"genres": [[4]]}))


def test_oov_fields_map_large_ids_to_the_oov_row_and_reject_negative_ids():
    # every field has an OOV row (what FeaturePipeline declares): the range check is one min over the ids
    fields = [EmbeddingField("user", 4, 3, oov_row=True), EmbeddingField("genres", 5, 3, pooling="mean", oov_row=True)]
    ec = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    out = ec(torch.tensor([[2], [40]]), KeyedJagged.from_lists({"genres": [[1, 99], [4]]}))
    user, genres = ec.field_weight("user"), ec.field_weight("genres")
    torch.testing.assert_close(out[:, 0], user[[2, 4]])  # 40 -> OOV row 4
    torch.testing.assert_close(out[0, 1], (genres[1] + genres[5]) / 2)
    with pytest.raises(DataError, match="id -1 is outside \\[0, 4\\) for field 'user'"):
        ec(torch.tensor([[-1], [0]]), KeyedJagged.from_lists({"genres": [[1], [2]]}))
    with pytest.raises(DataError, match="id -3 is outside \\[0, 5\\) for field 'genres'"):
        ec(torch.tensor([[1], [0]]), KeyedJagged.from_lists({"genres": [[1], [-3]]}))
