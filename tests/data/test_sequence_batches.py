"""Sequence batches: next-item shifts, truncation, padding, negatives, Cloze masking proportions, bad input."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.sequence_batches import ClozeBatches, NextItemBatches
from recsys.errors import ConfigError, DataError


def _data(lengths: list[int], num_items: int = 30, seed: int = 0) -> Interactions:
    """User u has ``lengths[u]`` items in time order; item ids = indices (all items appear)."""
    generator = torch.Generator().manual_seed(seed)
    users, items, times = [], [], []
    for user, length in enumerate(lengths):
        users += [user] * length
        items += torch.randint(0, num_items, (length,), generator=generator).tolist()
        times += list(range(length))
    users += [len(lengths)] * num_items  # one user who saw every item, so the vocabulary is 0..N-1
    items += list(range(num_items))
    times += list(range(num_items))
    return from_frame(pl.DataFrame({"user": users, "item": items, "timestamp": times}))


def _user_items(data: Interactions, user: int) -> list[int]:
    offsets, items = data.sequences()
    return items[offsets[user] : offsets[user + 1]].tolist()


def _collect(batches) -> dict[int, dict[str, torch.Tensor]]:  # type: ignore[no-untyped-def]
    """user -> its row (left-padded back to full width) across one epoch."""
    rows: dict[int, dict[str, torch.Tensor]] = {}
    for batch in batches:
        for i, user in enumerate(batch["users"].tolist()):
            assert user not in rows, "a user appears twice in one epoch"
            rows[user] = {k: v[i] for k, v in batch.items() if k != "users"}
    return rows


@pytest.mark.parametrize("group_by_length", [False, True])
def test_next_item_inputs_targets_truncation_and_padding(group_by_length: bool) -> None:
    data = _data([1, 2, 5, 12, 3])
    batches = NextItemBatches(data, max_len=6, batch_size=2, num_negatives=0, group_by_length=group_by_length)
    rows = _collect(batches)
    assert 0 not in rows  # a single item gives no (input, target) pair
    assert set(rows) == {1, 2, 3, 4, 5}
    for user, row in rows.items():
        items = [i + 1 for i in _user_items(data, user)][-7:]  # last max_len + 1, shifted by one
        inputs, targets = row["inputs"].tolist(), row["targets"].tolist()
        real_inputs = [x for x in inputs if x]
        assert real_inputs == items[:-1]
        assert [t for t in targets if t] == items[1:]
        assert all(x == 0 for x in inputs[: len(inputs) - len(real_inputs)])  # left padding
        assert [bool(t) for t in targets] == [bool(x) for x in inputs]  # a target exactly where an input is
        assert "negatives" not in row


def test_batches_are_cut_to_their_longest_sequence() -> None:
    data = _data([3, 3, 3])
    batch = next(iter(NextItemBatches(data, max_len=10, batch_size=3, num_negatives=0, group_by_length=True)))
    assert batch["inputs"].shape[1] == 2  # three items -> two inputs, not max_len
    assert (batch["inputs"] != 0).all()


def test_negatives_shape_range_and_exclusion() -> None:
    data = _data([8, 9, 10], num_items=12)
    data = data.with_frame(data.frame.filter(pl.col("user") < 3))  # drop the user who saw every item
    batches = NextItemBatches(data, max_len=5, batch_size=4, num_negatives=3, exclude_positives=True)
    for batch in batches:
        negatives = batch["negatives"]
        assert negatives.shape == (*batch["inputs"].shape, 3)
        assert int(negatives.min()) >= 1 and int(negatives.max()) <= 12
        for i, user in enumerate(batch["users"].tolist()):
            seen = {x + 1 for x in _user_items(data, user)}
            assert not seen & set(negatives[i].flatten().tolist())


def test_epochs_are_seeded_and_differ() -> None:
    data = _data([6] * 20)
    batches = NextItemBatches(data, max_len=4, batch_size=8, num_negatives=1, seed=3)
    first = [b["users"] for b in batches]
    again = [b["users"] for b in batches]
    batches.set_epoch(1)
    second = [b["users"] for b in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    assert len(first) == len(batches) == 3


def test_augment_covers_every_pair_of_long_histories_once() -> None:
    data = _data([11, 2])
    plain = NextItemBatches(data, max_len=3, batch_size=100, num_negatives=0)
    augmented = NextItemBatches(data, max_len=3, batch_size=100, num_negatives=0, augment=True)
    items = [i + 1 for i in _user_items(data, 0)]
    expected = sorted(zip(items[:-1], items[1:]))
    pairs = []
    for batch in augmented:
        for inputs, targets, user in zip(batch["inputs"], batch["targets"], batch["users"]):
            if int(user) == 0:
                pairs += [(int(a), int(b)) for a, b in zip(inputs, targets) if b]
    assert sorted(pairs) == expected  # 10 pairs in windows of 3: 4 rows for user 0
    assert int((augmented.users == 0).sum()) == 4 and int((plain.users == 0).sum()) == 1


def test_cloze_masking_proportion_labels_and_padding() -> None:
    data = _data([20] * 400 + [3] * 100, num_items=50)
    batches = ClozeBatches(data, max_len=25, batch_size=64, mask_prob=0.2, seed=1)
    mask_token = data.num_items + 1
    masked_total, real_total, rows = 0, 0, 0
    for batch in batches:
        inputs, labels = batch["inputs"], batch["labels"]
        for i, user in enumerate(batch["users"].tolist()):
            original = [x + 1 for x in _user_items(data, user)][-inputs.shape[1] :]
            row = inputs[i, inputs.shape[1] - len(original) :]
            lab = labels[i, inputs.shape[1] - len(original) :]
            masked = row == mask_token
            assert masked.any()  # every row trains
            assert torch.equal(lab[masked], torch.tensor(original)[masked])  # labels are the originals
            assert (lab[~masked] == 0).all() and torch.equal(row[~masked], torch.tensor(original)[~masked])
            assert (inputs[i, : inputs.shape[1] - len(original)] == 0).all()  # padding untouched
            if len(original) == 20:
                masked_total += int(masked.sum())
                real_total += len(original)
                rows += 1
    assert rows == 400
    assert masked_total / real_total == pytest.approx(0.2, abs=0.015)  # 8000 Bernoulli(0.2) draws


def test_cloze_forces_one_mask_on_the_last_item() -> None:
    data = _data([4] * 50)
    for batch in ClozeBatches(data, max_len=4, mask_prob=0.01):
        no_other = (batch["inputs"][:, :-1] != data.num_items + 1).all(1)
        assert (batch["inputs"][no_other, -1] == data.num_items + 1).all()


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda d: NextItemBatches(d, max_len=0), ConfigError),
        (lambda d: NextItemBatches(d, max_len=-3), ConfigError),
        (lambda d: NextItemBatches(d, batch_size=0), ConfigError),
        (lambda d: NextItemBatches(d, num_negatives=-1), ConfigError),
        (lambda d: ClozeBatches(d, max_len=0), ConfigError),
        (lambda d: ClozeBatches(d, mask_prob=0.0), ConfigError),
        (lambda d: ClozeBatches(d, mask_prob=1.5), ConfigError),
    ],
)
def test_bad_configuration(build, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        build(_data([4, 5]))


def test_empty_and_too_short_data() -> None:
    data = _data([4, 5])
    empty = data.with_frame(data.frame.head(0))
    with pytest.raises(DataError, match="no training interactions"):
        NextItemBatches(empty)
    with pytest.raises(DataError, match="no training interactions"):
        ClozeBatches(empty)
    singles = data.with_frame(data.frame.unique("user", keep="first"))
    with pytest.raises(DataError, match="2 or more"):
        NextItemBatches(singles)
