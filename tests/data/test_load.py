"""load_dataset: names, roots, preprocessing, caching (second load skips parsing), errors."""

from __future__ import annotations

import hashlib
import zipfile

import polars as pl
import pytest

from recsys.data import cache, download, movielens
from recsys.data.download import Archive
from recsys.data.load import embedded_folder, load_dataset
from recsys.errors import ConfigError, DataError


def test_embedded_default(tmp_path):
    data = load_dataset(cache_dir=tmp_path)
    assert data.name == "ml-latest-small"
    assert (data.num_users, data.num_items, data.num_interactions) == (610, 9724, 100_836)
    assert (embedded_folder() / "README.txt").is_file()
    genres, names = data.item_genres()
    assert genres.shape[0] == 9724 and "Comedy" in names


def test_embedded_matches_original_csv(tmp_path, shared_datasets):
    embedded = load_dataset(cache_dir=tmp_path / "a")
    original = load_dataset("ml-latest-small", root=shared_datasets, cache_dir=tmp_path / "b")
    assert embedded.frame.equals(original.frame)
    assert embedded.item_features.equals(original.item_features)


def test_local_roots(tmp_path, shared_datasets, monkeypatch):
    data = load_dataset("ml-100k", root=shared_datasets, cache_dir=tmp_path)
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100_000)
    assert data.user_features.columns == ["user", "age", "gender", "occupation", "zip"]
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(shared_datasets))
    beauty = load_dataset("amazon-beauty", cache_dir=tmp_path)
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22_363, 12_101, 198_502)


def test_second_load_hits_cache(tmp_path, monkeypatch):
    first = load_dataset(min_rating=4.0, k_core=5, deduplicate=True, cache_dir=tmp_path)
    assert first.ratings.min() >= 4 and first.user_counts().min() >= 5 and first.item_counts().min() >= 5

    def fail(*args, **kwargs):
        raise AssertionError("parser called although the dataset is cached")

    monkeypatch.setattr(movielens, "read_movielens", fail)
    second = load_dataset(min_rating=4.0, k_core=5, deduplicate=True, cache_dir=tmp_path)
    assert second.frame.equals(first.frame) and second.users == first.users and second.items == first.items
    assert second.item_features.equals(first.item_features) and second.name == first.name
    with pytest.raises(AssertionError, match="parser called"):  # other options: another entry
        load_dataset(min_rating=3.0, cache_dir=tmp_path)


def test_corrupt_cache_is_rebuilt(tmp_path):
    data = load_dataset(cache_dir=tmp_path)
    (entry,) = (tmp_path / "processed").iterdir()
    (entry / "frame.parquet").write_bytes(b"garbage")
    again = load_dataset(cache_dir=tmp_path)
    assert again.frame.equals(data.frame)
    assert pl.read_parquet(entry / "frame.parquet").equals(data.frame)
    assert not [p for p in (tmp_path / "processed").iterdir() if p.name.endswith(".part")]


def test_cache_key_tracks_source_changes(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user,item\n1,2\n")
    key = cache.cache_key("x", {}, [path])
    assert key == cache.cache_key("x", {}, [path]) != cache.cache_key("x", {"k_core": 2}, [path])
    path.write_text("user,item\n1,2\n3,4\n")
    assert cache.cache_key("x", {}, [path]) != key
    assert load_dataset(str(path), cache_dir=tmp_path / "c").num_interactions == 2


def test_file_paths(tmp_path):
    frame = pl.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "rating": [1.0, 2.0, 3.0], "timestamp": [1, 2, 3]})
    frame.write_parquet(tmp_path / "log.parquet")
    (tmp_path / "seq.txt").write_text("1 5 6\n2 5\n")
    assert load_dataset(str(tmp_path / "log.parquet"), cache_dir=tmp_path / "c").num_interactions == 3
    assert load_dataset(tmp_path / "seq.txt", cache_dir=tmp_path / "c").num_interactions == 3  # type: ignore[arg-type]
    with pytest.raises(DataError, match="file not found"):
        load_dataset(str(tmp_path / "absent.csv"), cache_dir=tmp_path / "c")


def test_download_path_uses_cache_dir(tmp_path, monkeypatch):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ml-1m/ratings.dat", "1::10::5::1\n2::10::3::2\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(archive.as_uri(), digest, folder="ml-1m"))
    monkeypatch.delenv("RECSYS_DATA_ROOT", raising=False)
    data = load_dataset("ml-1m", cache_dir=tmp_path / "cache")
    assert data.num_interactions == 2 and (tmp_path / "cache" / "raw" / "ml-1m" / "ml-1m" / "ratings.dat").is_file()


def test_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_DATA_ROOT", raising=False)
    with pytest.raises(DataError) as error:
        load_dataset("movielens-1m", cache_dir=tmp_path)
    assert "unknown dataset 'movielens-1m'" in str(error.value) and "ml-25m" in str(error.value)
    with pytest.raises(DataError, match="download=False"):
        load_dataset("ml-20m", cache_dir=tmp_path, download=False)
    with pytest.raises(DataError, match="pass root="):
        load_dataset("amazon-beauty", cache_dir=tmp_path)
    with pytest.raises(DataError) as error:
        load_dataset("ml-100k", root=tmp_path, cache_dir=tmp_path)
    assert str(tmp_path / "ml-100k") in str(error.value) and "u.data" in str(error.value)
    with pytest.raises(DataError, match=r"no interactions left after k_core"):
        load_dataset(k_core=1000, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"no interactions left after min_rating"):
        load_dataset(min_rating=6, cache_dir=tmp_path)


def test_env_root_without_the_dataset_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert load_dataset(cache_dir=tmp_path).num_interactions == 100_836  # the embedded copy
    with pytest.raises(DataError, match="download=False"):
        load_dataset("ml-1m", cache_dir=tmp_path, download=False)


def test_root_may_be_the_dataset_folder_itself(tmp_path, shared_datasets):
    data = load_dataset("ml-100k", root=shared_datasets / "ml-100k", cache_dir=tmp_path)
    assert data.num_interactions == 100_000


@pytest.mark.parametrize(("name", "file_name"), [("amazon-beauty", "beauty.txt"), ("amazon-beauty", "BEAUTY.txt"),
                                                 ("amazon-sports", "Sports_and_Outdoors.txt")])
def test_amazon_category_finds_its_file_in_any_case(tmp_path, name, file_name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / file_name).write_text("u1 1 2 3\nu2 2 3\n")
    data = load_dataset(name, root=tmp_path, cache_dir=tmp_path / "cache")
    assert data.name == name and data.num_interactions == 5


def test_amazon_category_with_two_candidate_files_asks_for_the_path(tmp_path):
    (tmp_path / "Toys_and_Games.txt").write_text("u1 1 2\n")
    (tmp_path / "Toys_old.txt").write_text("u1 1 2\n")
    with pytest.raises(DataError, match="several sequence files match amazon-toys") as error:
        load_dataset("amazon-toys", root=tmp_path, cache_dir=tmp_path / "cache")
    assert "dataset.name=" in str(error.value)


def test_files_take_column_options_and_named_datasets_refuse_them(tmp_path):
    path = tmp_path / "Shop.csv"
    path.write_text("who;what;stars\n1;a;5\n1;b;3\n2;a;4\n")
    data = load_dataset(str(path), cache_dir=tmp_path, user_col="who", item_col="what", rating_col="stars", separator=";")
    assert data.name == "Shop" and data.ratings.tolist() == [5.0, 3.0, 4.0] and data.items.ids.to_list() == ["a", "b"]
    with pytest.raises(ConfigError, match="column options apply to files"):
        load_dataset("ml-latest-small", cache_dir=tmp_path, user_col="userId")
    with pytest.raises(DataError, match=r"(?s)missing column\(s\) \[.user., .item.\].*dataset.user_col="):
        load_dataset(str(path), cache_dir=tmp_path, separator=";")
