"""item_texts: one text per item index from the item feature frame."""

import polars as pl
import pytest

from recsys.data.item_text import item_texts
from recsys.errors import DataError


def test_fields_joined_lists_flattened_missing_items_empty():
    features = pl.DataFrame({"item": [0, 1, 2], "title": ["Toy Story", "Heat", "Casino"], "genres": [["Animation"], ["Crime"], []],
                             "tags": [["pixar"], [], ["vegas", "mob"]]})
    assert item_texts(features, 4) == ["Toy Story | Animation | pixar", "Heat | Crime", "Casino | vegas, mob", ""]
    assert item_texts(features, 2, fields=("genres", "title")) == ["Animation | Toy Story", "Crime | Heat"]


def test_null_fields_and_out_of_range_items():
    features = pl.DataFrame({"item": [0, 1, 9], "title": ["A", None, "Z"]})
    assert item_texts(features, 3, fields=("title", "absent")) == ["A", "", ""]


@pytest.mark.parametrize("features", [None, pl.DataFrame({"title": ["A"]}), pl.DataFrame({"item": [0], "year": [1995]})])
def test_unusable_features_raise(features):
    with pytest.raises(DataError):
        item_texts(features, 1)
