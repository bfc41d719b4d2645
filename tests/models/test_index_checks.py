"""Out-of-range user/item indices give a DataError naming the bad values and the valid range (not IndexError)."""

from __future__ import annotations

import inspect

import polars as pl
import pytest
import torch

import recsys.models as models
from recsys.data.fields import FieldSpec
from recsys.data.frame import from_frame
from recsys.errors import DataError
from recsys.models.base import Recommender, check_indices
from recsys.models.logistic import CTRModel

NUM_USERS, NUM_ITEMS = 4, 5
ALL_CLASSES = sorted((cls for _, cls in inspect.getmembers(models, inspect.isclass)
                      if issubclass(cls, Recommender) and cls is not Recommender), key=lambda c: c.__name__)
# DIN reads a behaviour-history field a plain (user, item) build has not: its index checks are in tests/models/test_din.py
CLASSES = [c for c in ALL_CLASSES if c.__name__ != "DIN"]
SIZES = {"num_users": NUM_USERS, "num_items": NUM_ITEMS, "max_len": 4, "embedding_dim": 8, "num_heads": 1,
         "vector_size": 4, "gmf_dim": 4, "mlp_dim": 4, "layers": (8, 4), "factors": 2}


def history():
    users = [u for u in range(NUM_USERS) for _ in range(3)]
    items = [(u + j) % NUM_ITEMS for u in range(NUM_USERS) for j in range(3)]
    return from_frame(pl.DataFrame({"user": users, "item": items, "rating": [4.0] * len(users), "timestamp": list(range(len(users)))}))


def build(cls: type) -> Recommender:
    params = inspect.signature(cls).parameters
    model = cls(**{k: v for k, v in SIZES.items() if k in params})
    if isinstance(model, CTRModel):
        model.build([FieldSpec("user", NUM_USERS, oov_row=False), FieldSpec("item", NUM_ITEMS, oov_row=False)])
    return model.eval()


def test_all_model_classes_are_covered():
    assert {c.__name__ for c in ALL_CLASSES} - {c.__name__ for c in CLASSES} == {"DIN"}
    assert len(CLASSES) >= 13 and {c.__name__ for c in CLASSES} >= {"ALS", "SASRec", "BERT4Rec", "EASE", "FM", "NeuMF"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [NUM_USERS, NUM_USERS + 7, -1])
def test_score_users_out_of_range(cls: type, bad: int) -> None:
    model, data = build(cls), history()
    assert data.num_users == NUM_USERS
    with torch.no_grad(), pytest.raises(DataError, match=rf"users index out of range: got \[{bad}\]; valid range is \[0, {NUM_USERS}\)"):
        model.score_users(torch.tensor([0, bad]), data)


def _pointwise(cls: type) -> bool:
    return cls.predict is not Recommender.predict


@pytest.mark.parametrize("cls", [c for c in CLASSES if _pointwise(c)], ids=lambda c: c.__name__)
def test_predict_out_of_range(cls: type) -> None:
    model = build(cls)
    if isinstance(model, CTRModel):
        ok = {"ids": torch.tensor([[0, 1], [3, 4]])}
        bad = {"ids": torch.tensor([[0, 1], [3, NUM_ITEMS]])}  # without an OOV row it would read the next field's row
        match = rf"ids index out of range: got \[{NUM_ITEMS}\]; column 1 must lie in \[0, {NUM_ITEMS}\)"
    else:
        ok = {"users": torch.tensor([0, 3]), "items": torch.tensor([1, 4])}
        bad = {"users": torch.tensor([0, 3]), "items": torch.tensor([1, NUM_ITEMS])}
        match = rf"items index out of range: got \[{NUM_ITEMS}\]; valid range is \[0, {NUM_ITEMS}\)"
    with torch.no_grad():
        assert model.predict(ok).shape == (2,)
        with pytest.raises(DataError, match=match):
            model.predict(bad)


@pytest.mark.parametrize("cls", [c for c in CLASSES if issubclass(c, CTRModel)], ids=lambda c: c.__name__)
def test_ctr_fields_with_an_oov_row_accept_unseen_ids(cls: type) -> None:
    model = cls(**({"embedding_dim": 4} if "embedding_dim" in inspect.signature(cls).parameters else {}))
    model.build([FieldSpec("user", NUM_USERS), FieldSpec("item", NUM_ITEMS, oov_row=False)])
    with torch.no_grad():
        assert model.eval().predict({"ids": torch.tensor([[NUM_USERS, 1], [NUM_USERS + 9, 4]])}).shape == (2,)  # user: OOV row
        with pytest.raises(DataError, match=rf"got \[{NUM_ITEMS}\]; column 0 must lie in \[0, {NUM_ITEMS}\)") as error:
            model.predict({"ids": torch.tensor([[NUM_USERS + 9, NUM_ITEMS]])})
    assert "fields ['item']" in error.value.where


def test_check_indices_is_quiet_in_range_and_rejects_floats():
    check_indices(torch.tensor([], dtype=torch.long), 0, "users", "here")
    check_indices(torch.tensor([[0, 4], [2, 1]]), [3, 5], "ids", "here")
    with pytest.raises(DataError, match="integer indices"):
        check_indices(torch.tensor([0.0, 1.0]), 3, "users", "here")
    with pytest.raises(DataError, match=r"got \[-2, 9\]") as error:
        check_indices(torch.tensor([1, -2, 9, 9]), 3, "items", "M.predict")
    assert error.value.where == "M.predict"
