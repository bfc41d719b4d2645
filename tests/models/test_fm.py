"""FM: the O(F D) interaction equals the explicit pairwise sum; predictions equal a hand-built reference; it learns."""

from __future__ import annotations

from functools import partial

import torch

from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.optimizer import CombinedOptimizer
from recsys.embeddings.sparse_optim import RowWiseAdagrad
from recsys.evaluation.ctr import CTREvaluator
from recsys.models.fm import FM
from recsys.models.logistic import LogisticRegression
from recsys.nn.fm import FMInteraction, pairwise_interaction

FIELDS = [EmbeddingField("user", 6, 1), EmbeddingField("item", 7, 1), EmbeddingField("genres", 4, 1, pooling="sum")]


def explicit_pairs(v: torch.Tensor) -> torch.Tensor:
    """sum_{i<j} <v_i, v_j> with two Python loops (the definition)."""
    total = torch.zeros(v.shape[0], dtype=v.dtype)
    for i in range(v.shape[1]):
        for j in range(i + 1, v.shape[1]):
            total += (v[:, i] * v[:, j]).sum(-1)
    return total


def test_fast_interaction_equals_the_explicit_pairwise_sum() -> None:
    v = torch.randn(9, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(FMInteraction()(v), explicit_pairs(v))
    assert torch.allclose(pairwise_interaction(v), explicit_pairs(v))


def test_fast_interaction_gradient_equals_the_reference_gradient() -> None:
    v = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, dtype=torch.float64)
    (fast,) = torch.autograd.grad((FMInteraction()(v) * weights).sum(), v)
    (reference,) = torch.autograd.grad((explicit_pairs(v) * weights).sum(), v)
    assert torch.allclose(fast, reference)
    assert torch.autograd.gradcheck(FMInteraction(), (v,))


def batch() -> dict[str, torch.Tensor]:
    return {"ids": torch.tensor([[0, 1], [5, 9]]), "bag_values": torch.tensor([1, 2, 3]),  # item 9 is OOV (7 rows + OOV)
            "bag_offsets": torch.tensor([0, 2, 3]), "labels": torch.tensor([1.0, 0.0])}


def test_fm_prediction_equals_a_reference_built_from_table_rows() -> None:
    fields = [EmbeddingField(f.name, f.num_embeddings, 1, pooling=f.pooling, oov_row=True) for f in FIELDS]
    model = FM(embedding_dim=3, init_std=0.3)
    model.build(fields)
    with torch.no_grad():
        model.bias.fill_(0.25)
    ec = model.embeddings
    user, item, genres = (ec.field_weight(n) for n in ("user", "item", "genres"))  # (rows, 1 + D)
    rows = [torch.stack([user[0], item[1], genres[1] + genres[2]]), torch.stack([user[5], item[7], genres[3]])]
    expected = torch.stack([0.25 + r[:, 0].sum() + explicit_pairs(r[None, :, 1:])[0] for r in rows])
    assert torch.allclose(model.predict(batch()), expected, atol=1e-6)


def test_lr_is_first_order_only_and_fm_learns_a_planted_interaction() -> None:
    lr = LogisticRegression()
    lr.build(FIELDS)
    assert lr.embeddings.field_weight("user").shape == (6, 1)
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 20, (1000,), generator=gen), torch.randint(0, 20, (1000,), generator=gen)
    labels = ((users % 2) == (items % 2)).float()  # pure interaction: no first-order signal
    data = {"ids": torch.stack([users, items], 1), "labels": labels}
    fields = [EmbeddingField("user", 20, 1), EmbeddingField("item", 20, 1)]
    torch.manual_seed(0)  # randomness is the caller's: the model draws from the global RNG
    fm = FM(embedding_dim=4, init_std=0.1)
    fm.build(fields)
    opt = CombinedOptimizer(fm.parameters(), dense=partial(torch.optim.Adam, lr=0.01), sparse=partial(RowWiseAdagrad, lr=0.2))
    for _ in range(100):
        loss = fm(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert CTREvaluator.metrics(fm.predict(data).detach(), labels)["auc"] > 0.95


def test_state_dict_round_trips() -> None:
    a, b = FM(embedding_dim=3), FM(embedding_dim=3)
    a.build(FIELDS)
    b.build(FIELDS)
    assert not torch.equal(a.embeddings.tables["4"].weight, b.embeddings.tables["4"].weight)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.predict(batch() | {"ids": torch.tensor([[0, 1], [5, 6]])}), b.predict(batch() | {"ids": torch.tensor([[0, 1], [5, 6]])}))
