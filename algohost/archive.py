"""Algorithm sources as tar.gz: a deterministic pack, a safe unpack into memory, a content hash.

Unpacking never writes to disk and never trusts a member: links, devices, absolute
paths and '..' are refused, and the unpacked size is capped before it is read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from algohost.errors import InvalidArchive, PayloadTooLarge

SKIP_DIRS = frozenset({".git", "__pycache__", ".venv"})
SKIP_SUFFIXES = (".pyc",)
MAX_MEMBERS = 10_000
# Room for tar's own headers and padding on top of the files' bytes.
_TAR_OVERHEAD_PER_MEMBER = 1024


def _included(root: Path) -> list[Path]:
    paths: list[Path] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts) or path.name.endswith(SKIP_SUFFIXES):
            continue
        # A symlink could carry a file from outside the directory into the upload.
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        paths.append(path)
    return paths


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = path.stat().st_size
        info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
    return info


@contextmanager
def _writing(buffer: io.BytesIO) -> Iterator[tarfile.TarFile]:
    with gzip.GzipFile(filename="", fileobj=buffer, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        yield tar


def make_archive(root: Path) -> bytes:
    """tar.gz of `root` (paths relative to it), the same bytes for the same tree."""
    if not root.is_dir():
        raise InvalidArchive(f"{root} is not a directory")
    buffer = io.BytesIO()
    with _writing(buffer) as tar:
        for path in _included(root):
            info = _tarinfo(path, path.relative_to(root).as_posix())
            if info.isdir():
                tar.addfile(info)
            else:
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


def archive_of_files(files: Mapping[str, bytes]) -> bytes:
    """tar.gz of files given by relative path (the console's editor); names are checked
    when the archive is read, as any upload's are."""
    buffer = io.BytesIO()
    with _writing(buffer) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.size, info.mode = len(files[name]), 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def _safe_name(name: str) -> str:
    """The normalised relative path of a member; InvalidArchive if it could escape."""
    if "\\" in name or "\x00" in name:
        raise InvalidArchive(f"archive entry {name!r} has a forbidden character", entry=name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # tarfile keeps undecodable bytes as surrogates
        raise InvalidArchive(f"archive entry {name!r} is not a UTF-8 path",
                             entry=name.encode("utf-8", "replace").decode()) from exc
    path = PurePosixPath(name)
    if path.is_absolute():
        raise InvalidArchive(f"archive entry {name!r} is an absolute path", entry=name)
    if ".." in path.parts:
        raise InvalidArchive(f"archive entry {name!r} points outside the archive", entry=name)
    return "/".join(part for part in path.parts if part not in ("", "."))


def _check_member(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise InvalidArchive(f"archive entry {member.name!r} is a link; links are not allowed",
                             entry=member.name)
    # isreg() is also true for GNU sparse files, which unpack to more than they declare.
    if member.issparse() or not (member.isreg() or member.isdir()):
        raise InvalidArchive(f"archive entry {member.name!r} is not a regular file or directory",
                             entry=member.name)


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """Decompress with a cap: tarfile reads a pax header whole, so a bomb stops here."""
    cap = max_bytes + MAX_MEMBERS * _TAR_OVERHEAD_PER_MEMBER
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
            raw = gz.read(cap + 1)
    except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        raise InvalidArchive(f"the upload is not a valid tar.gz archive: {exc}") from exc
    if len(raw) > cap:
        raise PayloadTooLarge(f"the unpacked source is larger than {max_bytes} bytes",
                              limit=max_bytes)
    return raw


def read_archive(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """Regular files of a tar.gz by relative path; directories are implied by the paths."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    total = 0
    raw = _gunzip(data, max_bytes)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise InvalidArchive(f"the archive has more than {MAX_MEMBERS} entries")
                _check_member(member)
                name = _safe_name(member.name)
                if not name:
                    continue
                if member.isdir():
                    dirs.add(name)
                    continue
                if name in files:
                    raise InvalidArchive(f"archive entry {name!r} appears twice", entry=name)
                total += member.size
                if total > max_bytes:
                    raise PayloadTooLarge(
                        f"the unpacked source is larger than {max_bytes} bytes", limit=max_bytes)
                handle = tar.extractfile(member)
                files[name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArchive(f"the upload is not a valid tar.gz archive: {exc}") from exc
    _check_tree(files, dirs)
    return files


def _check_tree(files: dict[str, bytes], dirs: set[str]) -> None:
    """A path may not be both a file and the directory of another entry."""
    clashes = dirs & files.keys()
    clashes |= {str(parent) for path in [*files, *dirs]
                for parent in PurePosixPath(path).parents if str(parent) in files}
    if clashes:
        path = min(clashes)
        raise InvalidArchive(f"archive entry {path!r} is both a file and a directory", entry=path)


def content_hash(files: dict[str, bytes], manifest: dict[str, Any]) -> str:
    """sha256 over every path with its content's sha256, then the canonical manifest."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0")
        digest.update(hashlib.sha256(files[path]).hexdigest().encode() + b"\n")
    digest.update(b"manifest\0")
    digest.update(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()
