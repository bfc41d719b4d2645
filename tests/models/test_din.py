"""DIN: attends to the behaviour equal to the candidate (planted signal), masks padding, shares the item table."""

from __future__ import annotations

import numpy as np
import pytest
import polars as pl
import torch

from recsys.data.ctr_batches import FeatureBatches
from recsys.data.features import CategoricalFeature, FeaturePipeline, SequenceFeature
from recsys.models.din import DIN
from recsys.nn.interest import LocalActivationUnit


def planted(num_users: int = 1500, num_items: int = 40, length: int = 5, seed: int = 0):  # noqa: ANN201
    """Each user rates ``length`` distinct items at times 1..length, then one candidate later: a click iff the
    candidate is one of those items. Returns the pipeline (fit on all rows), the candidate rows' encoding and labels."""
    rng = np.random.default_rng(seed)
    seen = np.argsort(rng.random((num_users, num_items)), 1)[:, : length + 1]  # distinct items per user
    click = rng.random(num_users) < 0.5
    candidate = np.where(click, seen[np.arange(num_users), rng.integers(0, length, num_users)], seen[:, length])
    history = pl.DataFrame({"user": np.repeat(np.arange(num_users), length), "item": seen[:, :length].reshape(-1),
                            "timestamp": np.tile(np.arange(1, length + 1), num_users)})
    rows = pl.DataFrame({"user": np.arange(num_users), "item": candidate, "timestamp": np.full(num_users, length + 5)})
    pipe = FeaturePipeline([CategoricalFeature("item"), SequenceFeature("history", max_len=length)])
    pipe.fit(pl.concat([history, rows]))
    return pipe, pipe.transform(rows), torch.from_numpy(click.astype(np.float32)), candidate, seen[:, :length]


def fit_planted(softmax: bool, epochs: int, attention_activation: str = "dice"):  # noqa: ANN201
    """Train DIN on the planted rows; its attention weights (B, T) on them, the (B, T) mask of the behaviour equal
    to the candidate, the click mask (B,) and the accuracy."""
    torch.manual_seed(0)
    pipe, encoded, labels, candidate, seen = planted()
    model = DIN(pipe, embedding_dim=8, hidden_dims=(16,), attention_dims=(16,), attention_activation=attention_activation,
                softmax=softmax, sparse=False, init_std=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for epoch in range(epochs):
        for batch in FeatureBatches(encoded, labels, batch_size=256, seed=epoch):
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        batch = encoded.batch()
        weights = model.attention(batch)  # (B, T), behaviours in time order = seen's columns
        accuracy = float(((model.predict(batch) > 0) == labels.bool()).float().mean())
    clicked = labels.bool()
    equal = torch.from_numpy(seen == candidate[:, None])  # (B, T): the behaviour equal to the candidate
    return weights[clicked], equal[clicked], accuracy


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_din_attends_more_to_the_behaviour_equal_to_the_candidate() -> None:
    weights, equal, accuracy = fit_planted(softmax=True, epochs=10)
    others = weights.masked_fill(equal, float("-inf")).amax(1)  # the largest weight on another behaviour
    assert accuracy > 0.95
    assert float((weights[equal] > others).float().mean()) > 0.95


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_unnormalized_weights_single_out_the_behaviour_equal_to_the_candidate() -> None:
    # the paper's unnormalized weights: the sign is free, the equal behaviour's weight stands out from the others
    weights, equal, accuracy = fit_planted(softmax=False, epochs=20, attention_activation="relu")
    others = weights.masked_fill(equal, float("nan"))
    middle = others.nanmedian(1).values
    spread = (others - middle[:, None]).abs().nan_to_num(-1.0).amax(1)
    assert accuracy > 0.95
    assert float(((weights[equal] - middle).abs() > spread).float().mean()) > 0.9


def test_gradient_reaches_behaviour_only_item_rows_of_the_shared_item_table() -> None:
    pipe, encoded, labels, candidate, seen = planted(num_users=50)
    model = DIN(pipe, embedding_dim=4, hidden_dims=(8,), attention_dims=(4,), sparse=True)
    model.loss({**encoded.batch(), "labels": labels}).backward()
    only_history = sorted(set(seen.reshape(-1).tolist()) - set(candidate.tolist()))[0]
    row = int(pipe.features_[0].vocabulary_.to_index(pl.Series([only_history]), unknown="oov"))
    table = model.embeddings.tables["5"]
    grad = table.weight.grad.coalesce()
    assert table.row_offsets["item"] + row in grad.indices()[0].tolist()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith(("unit.", "dnn.")))


def test_padding_never_reaches_the_output() -> None:
    torch.manual_seed(0)
    unit = LocalActivationUnit(4, hidden_dims=(8,), activation="dice")  # train mode: Dice's batch statistics too
    query, keys = torch.randn(3, 4), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    out, weights = unit(query, keys, mask)
    changed = torch.where(mask.unsqueeze(-1), keys, torch.randn(3, 5, 4) * 100)
    out2, weights2 = unit(query, changed, mask)
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    torch.testing.assert_close(weights, weights2, rtol=0, atol=0)
    assert bool((weights[~mask] == 0).all())
    soft = LocalActivationUnit(4, hidden_dims=(8,), softmax=True).eval()
    _, w = soft(query, keys, mask)
    torch.testing.assert_close(w.sum(1), torch.ones(3))


def test_saved_pipeline_and_weights_reproduce_predictions() -> None:
    pipe, encoded, labels, *_ = planted(num_users=60)
    model = DIN(pipe, embedding_dim=4, hidden_dims=(8,), attention_dims=(4,), activation="prelu").eval()
    loaded_pipe = FeaturePipeline.from_dict(pipe.to_dict())
    again = DIN(loaded_pipe, embedding_dim=4, hidden_dims=(8,), attention_dims=(4,), activation="prelu").eval()
    again.load_state_dict(model.state_dict())
    rows = pl.DataFrame({"user": np.arange(60), "item": np.arange(60) % 40, "timestamp": np.full(60, 7)})
    with torch.no_grad():
        torch.testing.assert_close(again.predict(loaded_pipe.transform(rows).batch()),
                                   model.predict(pipe.transform(rows).batch()), rtol=0, atol=0)


def test_out_of_range_history_rows_and_ranking_say_so() -> None:
    import pytest

    from recsys.errors import ConfigError, DataError

    pipe, encoded, _, _, _ = planted(num_users=20)
    model = DIN(pipe, embedding_dim=4, hidden_dims=(8,), attention_dims=(8,)).eval()
    batch = encoded.batch()
    with torch.no_grad():
        assert model.predict(batch).shape == (20,)
        values, offsets = batch["bag_values"].clone(), batch["bag_offsets"]
        values[-1] = 10_000  # a history row past the item field's rows
        with pytest.raises(DataError, match="history rows must lie in"):
            model.predict({**batch, "bag_values": values, "bag_offsets": offsets})
        with pytest.raises(ConfigError, match="ranks users from their behaviours"):  # a side without them
            model.pair_logits(None, None, torch.arange(3))
