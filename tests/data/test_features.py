"""Feature pipeline: vocabularies from train only, OOV at transform, bags, numeric fields, errors, JSON round trip;
CTR batches read one fitted pipeline and never refit it."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
import torch

from recsys.data.ctr_batches import CTRBatches, FeatureBatches
from recsys.data.features import CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature
from recsys.data.fields import FieldSpec, ctr_frame
from recsys.data.frame import from_frame
from recsys.errors import ConfigError, DataError

TRAIN = pl.DataFrame({
    "user": [1, 1, 2, 3, 3, 3],
    "city": ["a", "b", "a", "a", None, "c"],
    "genres": [["x", "y"], ["y"], [], ["z", "y"], None, ["x"]],
    "age": [10.0, 20.0, 30.0, 40.0, None, 60.0],
})


def pipeline(**kw) -> FeaturePipeline:
    return FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("city", min_count=2), MultiCategoricalFeature("genres"),
                            NumericFeature("age", num_buckets=2), NumericFeature("age_dense", column="age", mode="dense")])


def test_vocabularies_are_fit_on_train_only_and_unseen_values_map_to_oov() -> None:
    pipe = pipeline().fit(TRAIN)
    test = pl.DataFrame({"user": [3, 99], "city": ["c", "zzz"], "genres": [["y", "new"], ["x"]], "age": [35.0, None]})
    enc = pipe.transform(test)
    # user: counts 3 (id 3) > 2 (id 1) > 1 (id 2) -> rows 0, 1, 2; OOV = 3
    assert enc.ids[:, 0].tolist() == [0, 3]
    # city: only "a" has count >= 2 -> row 0; "c" (rare at train) and unseen "zzz" -> OOV 1
    assert enc.ids[:, 1].tolist() == [1, 1]
    # genres: y(3) x(2) z(1) -> 0, 1, 2; "new" -> OOV 3
    assert enc.bag_values.tolist() == [0, 3, 1] and enc.bag_lengths.tolist() == [[2, 1]]
    # age: median boundary of train [10, 20, 30, 40, 60] = 30 -> 35 in bucket 1; missing -> OOV 2
    assert enc.ids[:, 2].tolist() == [1, 2]
    mean, std = torch.tensor([10.0, 20, 30, 40, 60]).mean(), torch.tensor([10.0, 20, 30, 40, 60]).std(unbiased=False)
    assert torch.allclose(enc.dense[:, 0], torch.tensor([(35 - mean) / std, 0.0]))
    fields = pipe.field_specs()
    assert all(isinstance(f, FieldSpec) for f in fields) and [f.multi_valued for f in fields] == [False, False, False, True]
    assert [(f.name, f.num_embeddings, f.oov_row, f.pooling) for f in fields] == [
        ("user", 3, True, "none"), ("city", 1, True, "none"), ("age", 2, True, "none"), ("genres", 3, True, "mean")]
    assert pipe.num_dense == 1 and pipe.feature_names == ["user", "city", "age", "genres", "age_dense"]


def test_refit_on_a_different_frame_changes_nothing_already_transformed_and_pandas_equals_polars() -> None:
    a = pipeline().fit(TRAIN).transform(TRAIN)
    b = pipeline().fit(TRAIN.to_pandas()).transform(TRAIN.to_pandas())
    for x, y in zip((a.ids, a.bag_values, a.bag_lengths, a.dense), (b.ids, b.bag_values, b.bag_lengths, b.dense)):
        assert torch.equal(x, y)


def test_separator_strings_and_prefixes() -> None:
    frame = pl.DataFrame({"g": ["A|B", "B", ""], "zip": ["12345", "12999", "98765"]})
    pipe = FeaturePipeline([MultiCategoricalFeature("g", separator="|"), CategoricalFeature("zip", prefix_length=2)]).fit(frame)
    enc = pipe.transform(frame)
    assert enc.ids[:, 0].tolist() == [0, 0, 1]
    assert enc.bag_lengths.tolist() == [[2, 1, 1]]  # "" splits into one empty-string value


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (TRAIN.drop("city"), "missing column"),
        (TRAIN.with_columns(pl.col("age").cast(pl.String)), "cannot read"),
        (TRAIN.with_columns(pl.lit(None, pl.Float64).alias("age")), "no non-missing values"),
        (TRAIN.clear(), "no rows"),
    ],
    ids=["missing-column", "wrong-dtype", "all-null", "empty"],
)
def test_bad_input_gives_clear_errors(frame: pl.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message):
        pipeline().fit(frame)


def test_transform_checks_dtype_against_fit_and_optional_features_are_skipped() -> None:
    pipe = pipeline().fit(TRAIN)
    with pytest.raises(DataError, match="was Int64 when the pipeline was fit"):
        pipe.transform(TRAIN.with_columns(pl.col("user").cast(pl.String)))
    with pytest.raises(DataError, match="missing column"):
        pipe.transform(TRAIN.drop("genres"))
    optional = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("tags", required=False)]).fit(TRAIN)
    assert optional.feature_names == ["user"]
    with pytest.raises(DataError, match="polars or pandas DataFrame"):
        pipe.transform([1, 2])


def reference_batches(enc, labels, order, batch_size):
    """Slow reference: per batch, per bag field, per row concatenation."""
    n_fields = enc.bag_lengths.shape[0]
    starts = torch.cumsum(enc.bag_lengths.flatten(), 0).view_as(enc.bag_lengths) - enc.bag_lengths
    for s in range(0, len(order), batch_size):
        rows = order[s : s + batch_size]
        values, lengths = [], []
        for f in range(n_fields):
            for r in rows.tolist():
                st, ln = int(starts[f, r]), int(enc.bag_lengths[f, r])
                values += enc.bag_values[st : st + ln].tolist()
                lengths.append(ln)
        yield enc.ids[rows], values, [0, *torch.tensor(lengths).cumsum(0).tolist()], labels[rows]


@pytest.mark.parametrize("bags", [("g", "t"), ("g",)], ids=["two-bag-fields", "one-bag-field"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_feature_batches_match_a_row_by_row_reference(shuffle: bool, bags: tuple[str, ...]) -> None:
    frame = pl.DataFrame({"u": [i % 5 for i in range(23)], "g": [[j for j in range(i % 4)] for i in range(23)],
                          "t": [[i % 3] for i in range(23)]})
    enc = FeaturePipeline([CategoricalFeature("u"), *(MultiCategoricalFeature(b) for b in bags)]).fit_transform(frame)
    labels = torch.arange(23).float() % 2
    batches = FeatureBatches(enc, labels, batch_size=5, shuffle=shuffle, seed=3)
    batches.set_epoch(2)
    order = batches._order()
    got = list(batches)
    assert len(got) == len(batches) == 5
    for batch, (ids, values, offsets, lab) in zip(got, reference_batches(enc, labels, order, 5)):
        assert torch.equal(batch["ids"], ids) and torch.equal(batch["labels"], lab)
        assert batch["bag_values"].tolist() == values and batch["bag_offsets"].tolist() == offsets


def test_ctr_batches_label_and_join_user_and_item_features() -> None:
    data = from_frame(pl.DataFrame({"user": [10, 10, 20], "item": [5, 6, 5], "rating": [4.0, 3.5, 5.0]}))
    data.user_features = pl.DataFrame({"user": [0, 1], "gender": ["F", "M"]})
    data.item_features = pl.DataFrame({"item": [0, 1], "genres": [["a"], ["a", "b"]]})
    frame = ctr_frame(data)
    assert frame.columns == ["user", "item", "gender", "genres"]
    pipe = FeaturePipeline([CategoricalFeature("gender"), MultiCategoricalFeature("genres")], label_threshold=4.0)
    with pytest.raises(ConfigError, match="fitted FeaturePipeline"):  # batches never fit the pipeline themselves
        CTRBatches(data, pipe)
    pipe.fit(data)  # an Interactions: its ctr_frame
    batch = next(iter(CTRBatches(data, pipe, batch_size=8, shuffle=False)))
    assert batch["labels"].tolist() == [1.0, 0.0, 1.0]
    assert batch["bag_offsets"].tolist() == [0, 1, 3, 4]
    pipe.label_threshold = 5.0  # the one threshold lives on the shared pipeline
    assert next(iter(CTRBatches(data, pipe, batch_size=8, shuffle=False)))["labels"].tolist() == [0.0, 0.0, 1.0]


def test_ctr_batches_use_the_fitted_pipeline_without_refitting() -> None:
    data = from_frame(pl.DataFrame({"user": [10, 10, 20, 30], "item": [5, 6, 5, 7], "rating": [4.0, 3.5, 5.0, 1.0]}))
    train = data.with_frame(data.frame.filter(pl.col("user") < 2))  # users 10, 20
    pipe = FeaturePipeline([CategoricalFeature("user"), CategoricalFeature("item")]).fit(train)
    vocabularies = [f.vocabulary_ for f in pipe.features_]
    batch = next(iter(CTRBatches(data, pipe, batch_size=8, shuffle=False)))
    assert [f.vocabulary_ for f in pipe.features_] == vocabularies  # the same objects: nothing refit
    assert batch["ids"][:, 0].tolist()[-1] == 2  # user 30 is unseen at fit: the OOV row


def test_to_dict_from_dict_and_save_load_rebuild_the_fitted_pipeline_exactly(tmp_path) -> None:
    import json

    frame = TRAIN.with_columns(pl.Series("flag", [True, False, True, True, None, False]),
                               pl.Series("small", [1, 2, 3, 4, 5, 6], dtype=pl.Int16), pl.col("city").cast(pl.Categorical))
    pipe = FeaturePipeline([*pipeline().features, CategoricalFeature("flag"), NumericFeature("small", num_buckets=3),
                            CategoricalFeature("city3", column="city", prefix_length=1), CategoricalFeature("absent", required=False),
                            MultiCategoricalFeature("genres_csv", column="csv", separator=",", pooling="sum", required=False)],
                           label_threshold=3.5).fit(frame)
    state = pipe.to_dict()
    assert json.loads(json.dumps(state)) == state  # plain JSON values
    test = frame.vstack(pl.DataFrame({"user": [99], "city": ["zzz"], "genres": [["new", "x"]], "age": [33.3], "flag": [None],
                                      "small": [9]}, schema=frame.schema))
    for rebuilt in (FeaturePipeline.from_dict(state), FeaturePipeline.load(pipe.save(tmp_path / "features.json"))):
        assert rebuilt.label_threshold == 3.5 and rebuilt.feature_names == pipe.feature_names
        assert rebuilt.field_specs() == pipe.field_specs() and rebuilt.num_dense == pipe.num_dense
        a, b = pipe.transform(test), rebuilt.transform(test)
        for x, y in zip((a.ids, a.bag_values, a.bag_lengths, a.dense), (b.ids, b.bag_values, b.bag_lengths, b.dense)):
            assert x.dtype == y.dtype and torch.equal(x, y)
        with pytest.raises(DataError, match="was Int64 when the pipeline was fit"):  # the fit dtype is restored too
            rebuilt.transform(test.with_columns(pl.col("user").cast(pl.String)))
    unfitted = FeaturePipeline.from_dict(pipeline().to_dict())
    assert not unfitted.fitted and unfitted.to_dict() == pipeline().to_dict()  # declarations only
    with pytest.raises(DataError, match="format"):
        FeaturePipeline.from_dict({**state, "format_version": 99})


def test_ml100k_vocabularies_come_from_the_training_split(shared_datasets) -> None:
    from recsys.data.load import load_dataset
    from recsys.data.splits import random_split

    data = load_dataset("ml-100k", root=str(shared_datasets / "ml-100k"))
    split = random_split(data, (0.8, 0.1, 0.1), seed=0)
    pipe = FeaturePipeline([CategoricalFeature("item"), MultiCategoricalFeature("genres"), CategoricalFeature("zip", prefix_length=3)])
    pipe.fit(split.train)
    CTRBatches(split.train, pipe)
    train_items = set(split.train.item_index.unique().tolist())
    assert pipe.field_specs()[0].num_embeddings == len(train_items)
    test_rows = pipe.transform(ctr_frame(split.test)).ids[:, 0]
    unseen = torch.tensor([i not in train_items for i in split.test.item_index.tolist()])
    assert unseen.any() and bool((test_rows[unseen] == len(train_items)).all()) and bool((test_rows[~unseen] < len(train_items)).all())
