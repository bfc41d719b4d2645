"""The cold-start protocol: items held out of training entirely, ranked for the users who had them."""

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.errors import ConfigError
from recsys.evaluation.cold_start import cold_start_split, evaluate_cold_start
from recsys.models.content import ContentRecommender


def _data(users=30, items=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(items, (users, 6), generator=g)
    frame = pl.DataFrame({"user": torch.arange(users).repeat_interleave(6).numpy(), "item": rows.flatten().numpy(),
                          "timestamp": torch.arange(users * 6).numpy()}).unique(["user", "item"])
    return from_frame(frame)


def test_split_holds_items_out_entirely():
    data = _data()
    split = cold_start_split(data, fraction=0.1, seed=1)
    present = torch.unique(data.item_index).numel()
    assert split.cold_items.numel() == round(0.1 * present)
    assert not torch.isin(split.train.item_index, split.cold_items).any()
    assert torch.isin(split.test.item_index, split.cold_items).all()
    assert split.train.num_interactions + split.test.num_interactions == data.num_interactions
    assert torch.equal(cold_start_split(data, 0.1, seed=1).cold_items, split.cold_items)


def test_text_similarity_finds_cold_items():
    # two topics; a user's cold test item shares the topic of its history -> text scoring ranks it high
    frame = pl.DataFrame({"user": [0, 0, 0, 1, 1, 1], "item": [0, 1, 2, 3, 4, 5], "timestamp": [1, 2, 3, 1, 2, 3]})
    data = from_frame(frame)
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.0], [0.0, 1.0], [0.1, 0.9], [0.0, 0.95]])
    model = ContentRecommender(num_items=6)
    model.set_item_vectors(vectors)
    split = cold_start_split(data, fraction=0.34, seed=0)
    out = evaluate_cold_start(model, split, candidates="all")
    assert out["hr@10"] == 1.0
    scores = model.score_users(torch.tensor([0, 1]), split.train)
    for cold in split.cold_items.tolist():
        user = 0 if cold < 3 else 1
        assert scores[user, cold] > scores[1 - user, cold]


def test_cold_candidates_mask_warm_items():
    data = _data()
    split = cold_start_split(data, fraction=0.2, seed=0)
    model = ContentRecommender(num_items=data.num_items)
    model.set_item_vectors(torch.ones(data.num_items, 4))  # all ties
    cold = evaluate_cold_start(model, split, candidates="cold")
    n_cold = split.cold_items.numel()
    assert cold["hr@10"] >= min(1.0, 10 / n_cold) - 1e-6  # ties among cold items only, minus the user's seen ones


@pytest.mark.parametrize("kwargs", [{"fraction": 0.0}, {"fraction": 1.0}])
def test_bad_fraction(kwargs):
    with pytest.raises(ConfigError):
        cold_start_split(_data(), **kwargs)


def test_bad_candidates():
    data = _data()
    model = ContentRecommender(num_items=data.num_items)
    model.set_item_vectors(torch.ones(data.num_items, 2))
    with pytest.raises(ConfigError):
        evaluate_cold_start(model, cold_start_split(data), candidates="warm")


class _FixedVectors:
    """A fitting engine that hands the content model fixed item vectors (every item has one, cold or not)."""

    def __init__(self, vectors: torch.Tensor) -> None:
        self.vectors = vectors

    def fit(self, model, train, *, device, generator, progress=True) -> None:
        model.set_item_vectors(self.vectors)


def test_run_pipeline_takes_a_cold_start_split(tmp_path):
    import recsys

    data = _data(users=40, items=30)
    split = recsys.cold_start_split(data, fraction=0.2, seed=0)
    assert split.valid.num_interactions == 0 and split.valid.num_items == data.num_items
    vectors = torch.randn(data.num_items, 4, generator=torch.Generator().manual_seed(0))
    evaluator = recsys.RankingEvaluator(ks=(5,), metrics=("hr", "ndcg"))
    result = recsys.run_pipeline(data, recsys.ContentRecommender, split=split, engine=_FixedVectors(vectors),
                                 trainer=recsys.Trainer(progress=False, tensorboard=False, monitor="ndcg@5"),
                                 evaluator=evaluator, run_dir=tmp_path / "run")
    per_user = {}
    expected = recsys.evaluate_cold_start(result.model, split, evaluator, per_user=per_user)
    assert result.test == expected  # every cold test item ranked among all items, training items masked
    assert not any("@" in key for key in result.valid)  # no validation metrics: nothing to select on
    assert result.history.num_interactions == split.train.num_interactions  # nothing of the test leaks into history
    assert torch.allclose(per_user["ndcg@5"].mean(), torch.tensor(expected["ndcg@5"], dtype=per_user["ndcg@5"].dtype))
    assert (tmp_path / "run" / "per_user_test.parquet").exists()
