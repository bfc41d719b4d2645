"""SGNSEngine.fit_seeded: the Word2Vec facade's numbers from an integer seed, and the item2vec bench row through the pipeline."""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.splits import leave_one_out
from recsys.estimators.word2vec import Word2Vec
from recsys.evaluation.ranking import RankingEvaluator
from recsys.models.item2vec import Item2Vec
from recsys.training.hogwild import seed_from
from recsys.training.sgns import SGNSEngine, SGNSResult

CPU = torch.device("cpu")
SETTINGS = dict(vector_size=8, window=3, negative=3, sg=1, min_count=1, sample=1e-3, epochs=3, batch_size=16)
OBJECTIVES = [dict(hs=0, negative=3), dict(hs=1, negative=0), dict(hs=1, negative=3)]  # negative sampling, hierarchical softmax, both


def browsing(num_users: int = 60, num_items: int = 30, length: int = 8, seed: int = 0) -> Interactions:
    """Users walking item ids upward (mod num_items) from a random start, in time order."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(num_items, (num_users, 1), generator=gen)
    items = (start + torch.arange(length)) % num_items
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    return from_frame(pl.DataFrame({"user": users.numpy(), "item": items.flatten().numpy(), "timestamp": times.numpy()}))


def facade_vectors(data: Interactions, seed: int, **overrides) -> torch.Tensor:
    """``(N, D)`` vectors by item index from ``Word2Vec(seed=...)`` on the (user, item index) corpus (zero rows: unknown)."""
    w2v = Word2Vec(workers=1, seed=seed, device="cpu", **{**SETTINGS, **overrides}).fit(data.frame.select("user", "item"))
    table = torch.zeros(data.num_items, SETTINGS["vector_size"])
    table[torch.as_tensor(np.asarray(w2v.wv.index_to_key, dtype=np.int64))] = torch.as_tensor(w2v.wv.vectors)
    return table


@pytest.mark.parametrize("objective", OBJECTIVES, ids=["ns", "hs", "hs+ns"])
def test_fit_seeded_equals_the_word2vec_facade(objective: dict):
    data = browsing()
    model = Item2Vec(num_items=data.num_items, **{**SETTINGS, **objective})
    result = SGNSEngine(workers=1).fit_seeded(model, data, device=CPU, seed=5)
    assert isinstance(result, SGNSResult) and result.seconds > 0 and result.effective_words > 0
    assert torch.equal(model.item_vectors, facade_vectors(data, seed=5, **objective))


def test_fit_is_fit_seeded_from_the_generator():
    data = browsing(seed=1)
    by_fit, by_seed = (Item2Vec(num_items=data.num_items, **SETTINGS) for _ in range(2))
    SGNSEngine(workers=1).fit(by_fit, data, device=CPU, generator=torch.Generator().manual_seed(3), progress=False)
    SGNSEngine(workers=1).fit_seeded(by_seed, data, device=CPU, seed=seed_from(torch.Generator().manual_seed(3)))
    assert torch.equal(by_fit.item_vectors, by_seed.item_vectors) and torch.equal(by_fit.known, by_seed.known)


@pytest.mark.parametrize("objective", OBJECTIVES[:2], ids=["ns", "hs"])
def test_bench_ours_row_through_the_pipeline_keeps_the_facade_numbers(objective: dict):
    """The bench's pipeline row equals the former hand-written one: Word2Vec facade + cosine to the last history item."""
    from recsys.benchmarks.item2vec import _fit_ours

    data = browsing(seed=2)
    split = leave_one_out(data)
    history = split.train.concat(split.valid)
    evaluator = RankingEvaluator(ks=(10,), metrics=("hr", "ndcg"))
    args = argparse.Namespace(vector_size=SETTINGS["vector_size"], window=SETTINGS["window"], negative=objective["negative"], hs=objective["hs"],
                              sg=1, epochs=SETTINGS["epochs"], batch_size=SETTINGS["batch_size"], workers=1, device="cpu", seed=7)
    metrics, seconds, _ = _fit_ours(args, data, split, evaluator)
    unit = F.normalize(facade_vectors(history, seed=7, **objective), dim=1)  # (N, D)
    known = unit.norm(dim=1) > 0
    last = history.padded_sequences(1)[:, 0] - 1  # (U,)
    expected = evaluator.evaluate(lambda users: (unit[last[users]] @ unit.T).masked_fill(~known, -torch.inf),
                                  history.user_item_matrix(), split.test.user_item_matrix())
    assert seconds > 0
    assert metrics == expected
