"""Silent corruption becomes loud: cache entries carry sha256s, archives are verified before extraction
(also when already downloaded), non-finite ratings/timestamps are rejected at the loader, folders are 0755."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import zipfile
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from recsys.data import cache, download
from recsys.data.download import Archive, extract
from recsys.data.frame import from_frame
from recsys.data.load import load_dataset
from recsys.data.movielens import read_movielens
from recsys.errors import DataError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _entry(cache_dir: Path) -> Path:
    (folder,) = (cache_dir / "processed").iterdir()
    return folder


def _silent_flip(path: Path) -> int:
    """A byte position whose flipped bit parquet reads without error but as different data (the case the hash
    exists for); if parquet caught every flip, any position still shows that the entry is rebuilt."""
    raw, original = path.read_bytes(), pl.read_parquet(path)
    for position in range(len(raw) // 2, len(raw) - 8):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        try:
            if not pl.read_parquet(io.BytesIO(bytes(flipped))).equals(original):
                return position
        except Exception:  # noqa: BLE001 - this flip is caught by parquet itself; look for a silent one
            continue
    return len(raw) // 2


# (a) cache entries ------------------------------------------------------------------------------
def test_flipped_bit_in_cached_frame_is_detected_and_rebuilt(tmp_path, caplog):
    original = load_dataset(cache_dir=tmp_path)
    frame = _entry(tmp_path) / "frame.parquet"
    position = _silent_flip(frame)
    raw = bytearray(frame.read_bytes())
    raw[position] ^= 0x01
    frame.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="recsys.data.cache"):
        again = load_dataset(cache_dir=tmp_path)
    assert again.frame.equals(original.frame)
    assert any("sha256 of frame.parquet" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert cache.load(_entry(tmp_path)) is not None  # the rebuilt entry verifies


def test_cache_meta_records_every_file_hash(tmp_path):
    load_dataset(cache_dir=tmp_path)
    folder = _entry(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    files = sorted(p.name for p in folder.glob("*.parquet"))
    assert sorted(meta["sha256"]) == files and "frame.parquet" in files
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_entry_without_hashes_is_rebuilt(tmp_path, caplog):
    load_dataset(cache_dir=tmp_path)
    folder = _entry(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["sha256"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="recsys.data.cache"):
        assert cache.load(folder) is None
    assert not folder.exists() and "rebuilding" in caplog.text


# (b) archives -----------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    return path


def test_fake_archive_already_in_downloads_is_refused(tmp_path):
    users = "".join(f"{u}\t1\t5\t1\n" for u in range(1, 30))  # a 29-user "ml-100k"
    fake = _zip(tmp_path / "downloads" / "ml-100k.zip", {"ml-100k/u.data": users})
    with pytest.raises(DataError, match="sha256 mismatch for ml-100k.zip") as error:
        load_dataset("ml-100k", cache_dir=tmp_path)
    assert str(fake) in error.value.fix and "delete" in error.value.fix
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("u.data"))
    assert fake.is_file()  # the user decides; nothing is deleted behind their back


def test_archive_already_present_and_valid_is_extracted(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "cache" / "downloads" / "ml-1m.zip", {"ml-1m/ratings.dat": "1::10::5::1\n"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive((tmp_path / "absent.zip").as_uri(), digest, folder="ml-1m"))
    folder = download.download_movielens("ml-1m", tmp_path / "cache")  # no download: the URL does not exist
    assert (folder / "ratings.dat").read_text() == "1::10::5::1\n"


def test_md5_only_archive_already_present_is_verified(tmp_path, monkeypatch):
    _zip(tmp_path / "downloads" / "ml-10m.zip", {"ml-10M100K/ratings.dat": "1::10::5::1\n"})
    monkeypatch.setitem(download.ARCHIVES, "ml-10m", Archive("file:///absent.zip", None, md5="0" * 32, folder="ml-10M100K"))
    with pytest.raises(DataError, match="md5 mismatch"):
        download.download_movielens("ml-10m", tmp_path)


def test_extract_rejects_special_files(tmp_path):
    archive = tmp_path / "fifo.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        info = zipfile.ZipInfo("ok/pipe")
        info.external_attr = (stat.S_IFIFO | 0o644) << 16
        zipped.writestr(info, "")
    with pytest.raises(DataError, match="special file"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["fifo.zip"]


# (c) non-finite values at the loader --------------------------------------------------------------
@pytest.mark.parametrize("kind", ["polars", "pandas", "csv", "parquet"])
def test_from_frame_rejects_infinite_ratings(tmp_path, kind):
    table = pl.DataFrame({"user": [1, 2, 3, 4], "item": [1, 2, 3, 4], "rating": [4.0, 3.0, float("inf"), 5.0]})
    source = {"polars": table, "pandas": table.to_pandas()}.get(kind)
    if source is None:
        source = tmp_path / f"ratings.{kind}"
        table.write_csv(source) if kind == "csv" else table.write_parquet(source)
    with pytest.raises(DataError, match="1 infinite value") as error:
        from_frame(source)
    assert "column 'rating'" in error.value.where and "[2]" in error.value.where
    assert (str(source) if kind in ("csv", "parquet") else "DataFrame") in error.value.where


def test_from_frame_rejects_non_finite_timestamps_and_float32_overflow():
    with pytest.raises(DataError, match="infinite") as error:
        from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, -float("inf")]}))
    assert "column 'timestamp'" in error.value.where and "[1]" in error.value.where
    with pytest.raises(DataError, match="too large for Float32"):
        from_frame(pl.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, 1e300]}))


@pytest.mark.parametrize(
    "files, bad",
    [
        ({"u.data": "1\t1\t5\t10\n2\t1\tinf\t11\n"}, "u.data"),
        ({"ratings.dat": "1::1::5::10\n2::1::4::inf\n"}, "ratings.dat"),
        ({"ratings.csv": "userId,movieId,rating,timestamp\n1,1,5,10\n2,1,Infinity,11\n"}, "ratings"),
    ],
)
def test_movielens_readers_reject_infinite_values(tmp_path, files, bad):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match="infinite value") as error:
        read_movielens(tmp_path)
    assert bad in error.value.where and "[1]" in error.value.where


def test_load_dataset_rejects_inf_rating_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,rating\n1,1,4\n1,2,inf\n")
    with pytest.raises(DataError, match="infinite") as error:
        load_dataset(str(path), cache_dir=tmp_path / "c")
    assert str(path) in error.value.where


# (g) folder modes ---------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cache_and_extracted_folders_are_readable_by_others(tmp_path, monkeypatch, umask_022):
    load_dataset(cache_dir=tmp_path / "cache")
    assert _mode(_entry(tmp_path / "cache")) == 0o755
    archive = _zip(tmp_path / "src" / "ml-1m.zip", {"ml-1m/ratings.dat": "1::10::5::1\n"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(archive.as_uri(), digest, folder="ml-1m"))
    folder = download.download_movielens("ml-1m", tmp_path / "cache")
    assert _mode(folder.parent) == 0o755 and _mode(folder) == 0o755
    assert _mode(tmp_path / "cache" / "downloads" / "ml-1m.zip") == 0o644
