"""Immutable blobs named by their sha256, on any fsspec filesystem (a directory, s3, memory).

A blob is written once under a temporary name while it is hashed, then moved to
`sha256/<2 hex>/<digest>`; the same content written again only costs the stream.
Blobs are never rewritten in place and never held whole in memory.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import fsspec

from algohost.errors import BlobTooLarge
from algohost.names import SHA256

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Written:
    digest: str
    size: int
    created: bool  # False: the content was already there


def is_digest(text: str) -> bool:
    return SHA256.matches(text)


def read_chunks(stream: IO[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    while chunk := stream.read(chunk_bytes):
        yield chunk


class BlobStore:
    """Content-addressed blobs under one root of one fsspec filesystem."""

    def __init__(self, url: str) -> None:
        fs, root = fsspec.core.url_to_fs(url)
        self.url = url
        self.fs: Any = fs
        self.root = str(root).rstrip("/")

    def path(self, digest: str) -> str:
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def put(self, chunks: Iterable[bytes], limit: int | None = None) -> Written:
        """Store a stream; past `limit` bytes stop and raise BlobTooLarge, storing nothing."""
        temporary = f"{self.root}/tmp/{uuid.uuid4().hex}"
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        hasher, size = hashlib.sha256(), 0
        try:
            with self.fs.open(temporary, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise BlobTooLarge(f"the content is over the {limit} bytes allowed",
                                           limit=limit)
                    hasher.update(chunk)
                    out.write(chunk)
            digest = hasher.hexdigest()
            final = self.path(digest)
            if self.fs.exists(final):
                self.fs.rm(temporary)
                return Written(digest, size, created=False)
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(temporary, final)
            return Written(digest, size, created=True)
        except BaseException:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)
            raise

    def put_file(self, source: IO[bytes], limit: int | None = None) -> Written:
        return self.put(read_chunks(source), limit)

    def open(self, digest: str) -> IO[bytes]:
        """The blob for reading; FileNotFoundError when it is not there."""
        return self.fs.open(self.path(digest), "rb")  # type: ignore[no-any-return]

    def chunks(self, digest: str) -> Iterator[bytes]:
        with self.open(digest) as blob:
            yield from read_chunks(blob)

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.path(digest)))

    def size(self, digest: str) -> int:
        return int(self.fs.size(self.path(digest)))

    def delete(self, digest: str) -> int:
        """Remove a blob; the bytes freed (0 when it was already gone)."""
        path = self.path(digest)
        try:
            size = int(self.fs.size(path))
            self.fs.rm(path)
        except FileNotFoundError:
            return 0
        return size

    def digests(self) -> Iterator[str]:
        """Every blob stored, whatever the records say: the filesystem is the truth."""
        base = f"{self.root}/sha256"
        if not self.fs.exists(base):
            return
        for path in self.fs.find(base):
            name = str(path).rsplit("/", 1)[-1]
            if is_digest(name):
                yield name
