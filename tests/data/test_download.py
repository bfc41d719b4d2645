"""Downloader: file:// URLs, checksums (mismatch leaves nothing behind), unsafe zip members."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from recsys.data import download
from recsys.data.download import Archive, extract, fetch
from recsys.errors import DataError


def _zip(path: Path, members: dict[str, str], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, "/etc/passwd")
    return path


def test_fetch_verifies_sha256(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    target = fetch(source.as_uri(), tmp_path / "out" / "a.bin", sha256=digest)
    assert target.read_bytes() == b"hello"
    md5 = hashlib.md5(b"hello").hexdigest()
    assert fetch(source.as_uri(), tmp_path / "out" / "b.bin", md5=md5).is_file()


def test_fetch_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"tampered")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch(source.as_uri(), out / "a.zip", sha256="0" * 64)
    assert list(out.iterdir()) == []


def test_fetch_unreachable(tmp_path):
    with pytest.raises(DataError, match="download failed"):
        fetch((tmp_path / "absent.zip").as_uri(), tmp_path / "out" / "a.zip")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "members, link",
    [({"../evil.txt": "x"}, None), ({"/abs/evil.txt": "x"}, None), ({"ok/a.txt": "x"}, "ok/link")],
)
def test_extract_rejects_unsafe_members(tmp_path, members, link):
    archive = _zip(tmp_path / "bad.zip", members, link)
    with pytest.raises(DataError, match="unsafe archive member"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_extract_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        extract(tmp_path / "x.zip", tmp_path / "out")


def test_download_movielens_end_to_end(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "ml-1m.zip", {"ml-1m/ratings.dat": "1::10::5::1\n", "ml-1m/movies.dat": "10::A::Drama\n"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "ml-1m", Archive(archive.as_uri(), digest, folder="ml-1m"))
    folder = download.download_movielens("ml-1m", tmp_path / "cache")
    assert (folder / "ratings.dat").read_text() == "1::10::5::1\n"
    assert (tmp_path / "cache" / "downloads" / "ml-1m.zip").is_file()
    archive.unlink()  # a second call reuses the extracted folder
    assert download.download_movielens("ml-1m", tmp_path / "cache") == folder


def test_known_checksums_are_well_formed():
    for name, archive in download.ARCHIVES.items():
        assert archive.url.endswith(f"/{name}.zip")
        assert (archive.sha256 and len(archive.sha256) == 64) or (archive.md5 and len(archive.md5) == 32)
