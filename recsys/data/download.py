"""Download, verify and safely extract dataset archives (stdlib only: urllib, hashlib, zipfile)."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from recsys.errors import DataError

log = logging.getLogger(__name__)

GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Archive:
    """A downloadable zip: its URL, checksum(s) and the folder it extracts to."""

    url: str
    sha256: str | None
    md5: str | None = None  # used only where no sha256 is known
    folder: str = ""


# sha256 from tensorflow_datasets' url_checksums/movielens.txt; ml-10m only has GroupLens' md5.
ARCHIVES = {
    "ml-100k": Archive(f"{GROUPLENS}/ml-100k.zip", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", folder="ml-100k"),
    "ml-1m": Archive(f"{GROUPLENS}/ml-1m.zip", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", folder="ml-1m"),
    "ml-10m": Archive(f"{GROUPLENS}/ml-10m.zip", None, md5="ce571fd55effeba0271552578f2648bd", folder="ml-10M100K"),
    "ml-20m": Archive(f"{GROUPLENS}/ml-20m.zip", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", folder="ml-20m"),
    "ml-25m": Archive(f"{GROUPLENS}/ml-25m.zip", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", folder="ml-25m"),
}

_CHUNK = 1 << 20


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent/<prefix>.<random>.part`` created with the default mode (umask applies).

    Not ``tempfile.mkdtemp``: its 0700 folders, once renamed into place, hide a shared cache from other users.
    """
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{prefix}.{secrets.token_hex(6)}.part"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def file_digest(path: Path, kind: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(kind)
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, *, sha256: str | None = None, md5: str | None = None, url: str = "") -> None:
    """Check a file already on disk against the known checksum (sha256, else md5); DataError on a mismatch."""
    kind, expected = ("sha256", sha256) if sha256 is not None else ("md5", md5)
    if expected is None:
        log.warning("no checksum known for %s; accepting it unverified", url or path)
        return
    found = file_digest(path, kind)
    if found != expected.lower():
        raise DataError(
            f"{kind} mismatch for {path.name}: got {found}, expected {expected}"
            + (f" (the file published at {url})" if url else ""),
            where=str(path),
            fix=f"delete {path} and run again to download it afresh (or pass root= to a verified local copy)",
        )


def fetch(url: str, destination: Path, *, sha256: str | None = None, md5: str | None = None) -> Path:
    """Download ``url`` to ``destination`` atomically, verifying the checksum given.

    The bytes go to a temporary file beside ``destination`` that is renamed only once complete
    and verified; on any failure nothing is left behind. With neither checksum the file is
    accepted unverified (a warning is logged).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    handle, tmp_name = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: a shared cache stays readable (as recsys.runtime.atomic_write)
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as response:  # noqa: S310
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        for kind, expected in (("sha256", sha256), ("md5", md5)):
            if expected is not None and digests[kind].hexdigest() != expected.lower():
                raise DataError(
                    f"{kind} mismatch for {url}: got {digests[kind].hexdigest()}, expected {expected}",
                    where=str(destination),
                    fix="retry the download (it may have been truncated), or pass root= to a verified local copy",
                )
        if sha256 is None and md5 is None:
            log.warning("no checksum known for %s; accepting it unverified", url)
        os.replace(tmp, destination)
    except OSError as error:
        raise DataError(
            f"download failed: {url}: {error}",
            where=str(destination),
            fix="check the network connection, or download the file yourself and pass root=",
        ) from error
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def _check_member(info: zipfile.ZipInfo, archive: Path, root: Path) -> None:
    """Reject members that would escape ``root`` (the resolved extraction folder) or create links or devices."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        reason = "an absolute path or '..'"
    elif stat.S_ISLNK(mode):
        reason = "a symbolic link"
    elif kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        reason = "a special file (device, pipe or socket)"
    elif not (root / name).resolve().is_relative_to(root):
        reason = "a path outside the target folder"
    else:
        return
    raise DataError(
        f"unsafe archive member {name!r}: {reason}",
        where=str(archive),
        fix="the archive is corrupt or malicious; delete it and download it again",
    )


def extract(archive: Path, target: Path) -> Path:
    """Extract a zip into ``target`` safely and atomically (via a temporary sibling folder).

    Every member is checked before anything is written: no absolute paths, no ``..``, no links or
    special files, nothing that resolves outside ``target``.
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            tmp = make_temp_dir(target.parent, target.name)
            try:
                root = tmp.resolve()
                for info in members:
                    _check_member(info, archive, root)
                zipped.extractall(tmp, members)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except zipfile.BadZipFile as error:
        raise DataError(f"not a valid zip file: {error}", where=str(archive), fix="delete it and download it again") from error
    return target


def download_movielens(name: str, cache_dir: Path) -> Path:
    """The extracted folder of a GroupLens MovieLens dataset, downloading it when needed."""
    archive = ARCHIVES[name]
    extracted = cache_dir / "raw" / name
    folder = extracted / archive.folder
    if folder.is_dir():
        return folder
    zip_path = cache_dir / "downloads" / f"{name}.zip"
    if zip_path.is_file():  # left by an earlier run, or put there by hand: verified like a fresh download
        verify(zip_path, sha256=archive.sha256, md5=archive.md5, url=archive.url)
    else:
        log.info("downloading %s to %s", archive.url, zip_path)
        fetch(archive.url, zip_path, sha256=archive.sha256, md5=archive.md5)
    extract(zip_path, extracted)
    if not folder.is_dir():
        raise DataError(
            f"{zip_path.name} did not contain the folder {archive.folder!r}",
            where=str(extracted),
            fix="delete the cache folder and retry, or pass root= to a local copy",
        )
    return folder
