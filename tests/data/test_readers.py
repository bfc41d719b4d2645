"""MovieLens and sequence-file parsers: real local files (counts) and tiny synthetic ones."""

from __future__ import annotations

import pytest
import torch

from recsys.data.movielens import read_movielens
from recsys.data.sequences_file import load_sequence_file
from recsys.errors import DataError


def test_ml_latest_small_csv(shared_datasets):
    data = read_movielens(shared_datasets / "ml-latest-small", "ml-latest-small")
    assert (data.num_users, data.num_items, data.num_interactions) == (610, 9724, 100_836)
    features = data.item_features
    assert features.height == 9724 and features.columns == ["item", "title", "genres", "tags"]
    toy = features.row(0, named=True)
    assert toy["title"] == "Toy Story (1995)" and "Animation" in toy["genres"] and "pixar" in toy["tags"]
    genres, names = data.item_genres()
    assert genres.shape == (9724, len(names)) and "(no genres listed)" not in names


def test_ml_100k(shared_datasets):
    data = read_movielens(shared_datasets / "ml-100k", "ml-100k")
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100_000)
    assert data.user_features.row(1, named=True) == {"user": 1, "age": 53, "gender": "F", "occupation": "other", "zip": "94043"}
    genres, names = data.item_genres()
    assert len(names) == 19 and genres.shape == (1682, 19)
    assert [names[j] for j in torch.nonzero(genres[0]).flatten()] == ["Animation", "Children's", "Comedy"]


def test_beauty_sequences(shared_datasets):
    data = load_sequence_file(shared_datasets / "amazon-beauty" / "Beauty.txt")
    assert (data.num_users, data.num_items, data.num_interactions) == (22_363, 12_101, 198_502)
    offsets, items = data.sequences()
    assert data.items.to_original(items[offsets[0] : offsets[1]]) == [1, 2, 3, 4, 5]


def test_dat_layout_ml_1m_style(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Star Wars: Episode IV (1977)::Action|Sci-Fi\n20::Amélie (2001)::Comedy|Romance\n30::Unrated::Drama\n".encode("latin-1")
    )
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    data = read_movielens(tmp_path, "ml-1m")
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 2, 3)
    assert data.item_features["title"].to_list() == ["Star Wars: Episode IV (1977)", "Amélie (2001)"]
    assert data.item_features["genres"].to_list() == [["Action", "Sci-Fi"], ["Comedy", "Romance"]]
    assert data.user_features.to_dicts()[1] == {"user": 1, "age": 56, "gender": "M", "occupation": 16, "zip": "70072"}
    assert data.ratings.tolist() == [5.0, 3.0, 4.0]


def test_dat_layout_ml_10m_style_with_tags(tmp_path):
    (tmp_path / "ratings.dat").write_text("5::1::4.5::1\n5::2::0.5::2\n")
    (tmp_path / "movies.dat").write_bytes("1::Amélie (2001)::(no genres listed)\n2::B (2000)::Drama\n".encode())
    (tmp_path / "tags.dat").write_text("5::1::funny::3\n5::1::dark::4\n5::1::funny::5\n")
    data = read_movielens(tmp_path, "ml-10m")
    assert data.ratings.tolist() == [4.5, 0.5]
    assert data.item_features["genres"].to_list() == [[], ["Drama"]]
    assert data.item_features["title"][0] == "Amélie (2001)"  # UTF-8 here, latin-1 in ml-1m
    assert data.item_features["tags"].to_list() == [["dark", "funny"], []]


def test_missing_files_named(tmp_path):
    with pytest.raises(DataError) as error:
        read_movielens(tmp_path / "nowhere")
    assert "nowhere" in str(error.value) and "u.data" in str(error.value) and "ratings.csv" in str(error.value)
    (tmp_path / "ratings.dat").write_text("1::2::3\n")
    with pytest.raises(DataError, match="expected 4 fields"):
        read_movielens(tmp_path)
    (tmp_path / "ratings.dat").write_text("1::x::3::4\n")
    with pytest.raises(DataError, match="'item' has 1 non-integer"):
        read_movielens(tmp_path)


def test_bad_ratings_in_u_data(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\tfive\t100\n1\t3\t4\t101\n")
    with pytest.raises(DataError, match="'rating' has 1 non-numeric"):
        read_movielens(tmp_path)


def test_sequence_file_parsing(tmp_path):
    path = tmp_path / "Toys.txt"
    path.write_text("u2 b a\n\nu1 c  a b\nu3\n")
    data = load_sequence_file(path)
    assert data.name == "Toys" and data.users.ids.to_list() == ["u1", "u2"]  # named by the stem, as its run directory
    assert data.frame.rows() == [(0, 2, 0), (0, 0, 1), (0, 1, 2), (1, 1, 0), (1, 0, 1)]
    with pytest.raises(DataError, match="sequence file not found"):
        load_sequence_file(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("u1\n")
    with pytest.raises(DataError, match="no interactions"):
        load_sequence_file(tmp_path / "empty.txt")
