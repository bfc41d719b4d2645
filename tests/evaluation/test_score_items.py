"""``score_items`` (candidate scoring) of every model that overrides it equals the matching columns of
``score_users``; the base default gathers them; bad candidates raise; sampled evaluation through
``evaluate_model`` (candidates only) equals sampled evaluation on the full scores, same seed."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.errors import DataError
from recsys.evaluation import RankingEvaluator
from recsys.models.als import ALS
from recsys.models.base import Recommender
from recsys.models.bert4rec import BERT4Rec
from recsys.models.biased_mf import BiasedMF
from recsys.models.bpr import BPRMF
from recsys.models.ease import EASE
from recsys.models.gru4rec import GRU4Rec
from recsys.models.item2vec import Item2Vec
from recsys.models.neumf import NeuMF
from recsys.models.popularity import Popularity
from recsys.models.sasrec import SASRec

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")
USERS, ITEMS = 20, 40


def interactions(seed: int = 0, rows: int = 300) -> Interactions:
    gen = torch.Generator().manual_seed(seed)
    users = torch.cat([torch.arange(USERS), torch.randint(0, USERS, (rows - USERS,), generator=gen)])
    items = torch.cat([torch.arange(ITEMS), torch.randint(0, ITEMS, (rows - ITEMS,), generator=gen)])[:rows]
    return from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": torch.rand(rows, generator=gen).numpy(),
                                    "timestamp": torch.arange(rows).numpy()}))


def item2vec() -> Item2Vec:
    model = Item2Vec(ITEMS, vector_size=6, last_n=3)
    known = torch.arange(ITEMS)[torch.arange(ITEMS) % 7 != 3]  # some unknown items score -inf
    model.set_vectors(known, torch.randn(len(known), 6))
    return model


BUILDERS = {
    "bpr": lambda: BPRMF(USERS, ITEMS, embedding_dim=8),
    "biased_mf": lambda: BiasedMF(USERS, ITEMS, embedding_dim=8),
    "als": lambda: ALS(USERS, ITEMS, factors=5),
    "neumf": lambda: NeuMF(USERS, ITEMS, gmf_dim=4, mlp_dim=4, layers=(8, 4)),
    "neumf_gmf": lambda: NeuMF(USERS, ITEMS, gmf_dim=4, mlp_dim=4, layers=(8, 4), mode="gmf"),
    "popularity": lambda: Popularity(ITEMS),
    "ease": lambda: EASE(ITEMS, reg=5.0),
    "sasrec": lambda: SASRec(ITEMS, max_len=6, embedding_dim=8),
    "gru4rec": lambda: GRU4Rec(ITEMS, max_len=6, embedding_dim=8, hidden_size=8),
    "bert4rec": lambda: BERT4Rec(ITEMS, max_len=6, embedding_dim=8, num_heads=2),
    "item2vec": item2vec,
}


def build(name: str, data: Interactions) -> Recommender:
    torch.manual_seed(0)
    model = BUILDERS[name]()
    if name in ("ease", "popularity"):  # closed forms; ALS's prepare would fit it (seconds), random factors do
        model.prepare(data)
    with torch.no_grad():  # weights far from their initial values, biases included
        for tensor in [*model.parameters(), *(b for n, b in model.named_buffers() if "factors" in n)]:
            tensor.add_(0.5 * torch.randn_like(tensor))
    return model.eval()


@pytest.fixture(scope="module")
def data() -> Interactions:
    return interactions()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_score_items_equals_the_matching_columns_of_score_users(name: str, data: Interactions) -> None:
    model = build(name, data)
    assert type(model).score_items is not Recommender.score_items, "the override under test"
    users = torch.tensor([3, 0, 3, 19, 7])  # any order, repeats
    items = torch.randint(0, ITEMS, (5, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model.score_users(users, data)  # (B, N)
        assert full[full.isfinite()].std() > 0.05  # not a constant grid
        torch.testing.assert_close(model.score_items(users, items, data), full.gather(1, items), atol=1e-5, rtol=1e-5)
        shared = torch.tensor([ITEMS - 1, 2, 2, 0])
        torch.testing.assert_close(model.score_items(users, shared, data), full[:, shared], atol=1e-5, rtol=1e-5)
        # the base default (what every other model gets) is the exact gather
        assert torch.equal(Recommender.score_items(model, users, items, data), full.gather(1, items))


@pytest.mark.parametrize("name", ["bpr", "ease", "sasrec"])
def test_bad_candidates_raise(name: str, data: Interactions) -> None:
    model = build(name, data)
    users = torch.tensor([0, 1])
    with pytest.raises(DataError, match="items index out of range"):
        model.score_items(users, torch.tensor([[0, ITEMS]] * 2), data)
    with pytest.raises(DataError, match="items must be"):
        model.score_items(users, torch.zeros(3, 4, dtype=torch.long), data)


@pytest.mark.parametrize("name", ["bpr", "ease", "popularity"])
def test_sampled_evaluate_model_equals_sampled_ranking_of_the_full_scores(name: str) -> None:
    data = interactions(seed=2, rows=400)
    rows = pl.int_range(data.num_interactions, eager=True)
    train, test = data.with_frame(data.frame.filter(rows % 4 != 0)), data.with_frame(data.frame.filter(rows % 4 == 0))
    model = build(name, train)
    ev = RankingEvaluator(ks=(1, 5), metrics=("hr", "ndcg", "mrr"), num_negatives=10, seed=3, batch_size=6)
    per_model: dict[str, torch.Tensor] = {}
    per_full: dict[str, torch.Tensor] = {}
    got = ev.evaluate_model(model, train, test, per_user=per_model)  # score_items on (B, R + 10) candidates
    with torch.no_grad():
        expected = ev.evaluate(lambda u: model.score_users(u, train), train.user_item_matrix(), test.user_item_matrix(),
                               per_user=per_full)
    assert got == pytest.approx(expected, abs=1e-9)
    for key, values in per_full.items():
        torch.testing.assert_close(per_model[key], values, atol=1e-9, rtol=0)
