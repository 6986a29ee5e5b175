"""Data collections: `data://OWNER/COLLECTION/PATH` files kept as blobs, with an access rule.

A collection is private (its owner only, and calls the owner makes), readable by the
owner's algorithms whoever calls them, or public. The rule is checked here, by the
API for a key and by the worker for a running call's caller; never in a container.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import redis

from algohost.artifacts.store import ArtifactStore
from algohost.clock import now_iso
from algohost.errors import Forbidden, InvalidRequest, NotFound
from algohost.names import DataUri
from algohost.store import PREFIX, translate_errors


class Access(StrEnum):
    PRIVATE = "private"  # the owner, and calls the owner makes
    ALGORITHMS = "algorithms"  # also calls of the owner's algorithms, whoever calls them
    PUBLIC = "public"  # anyone with a key


class DataNotFound(NotFound):
    code = "data_not_found"


class DataForbidden(Forbidden):
    code = "data_forbidden"


@dataclass(frozen=True)
class Collection:
    owner: str
    name: str
    access: Access
    created_at: str

    def readable_by(self, reader: str, algorithm_owner: str | None = None) -> bool:
        """Can `reader` (a key's owner, or a call's caller running an algorithm of
        `algorithm_owner`) read this collection?"""
        return (reader == self.owner or self.access is Access.PUBLIC
                or (self.access is Access.ALGORITHMS and algorithm_owner == self.owner))


@dataclass(frozen=True)
class DataFile:
    path: str
    sha256: str
    size: int
    media_type: str
    modified_at: str


class DataStore:
    def __init__(self, client: redis.Redis, artifacts: ArtifactStore) -> None:
        self.redis: Any = client
        self.artifacts = artifacts

    @staticmethod
    def _collections(owner: str) -> str:
        return f"{PREFIX}data:{owner}"

    @staticmethod
    def _files(owner: str, collection: str) -> str:
        return f"{PREFIX}data:{owner}:{collection}:files"

    @translate_errors
    def make(self, owner: str, name: str, access: Access) -> tuple[Collection, bool]:
        """Create a collection, or set an existing one's access; (it, created)."""
        existing = self.collection(owner, name)
        created_at = existing.created_at if existing else now_iso()
        found = Collection(owner, name, access, created_at)
        self.redis.hset(self._collections(owner), name,
                        json.dumps({**asdict(found), "access": access.value}))
        return found, existing is None

    @translate_errors
    def collection(self, owner: str, name: str) -> Collection | None:
        raw = self.redis.hget(self._collections(owner), name)
        if raw is None:
            return None
        data = json.loads(raw)
        return Collection(data["owner"], data["name"], Access(data["access"]),
                          data["created_at"])

    @translate_errors
    def collections(self, owner: str) -> list[Collection]:
        names = sorted(self.redis.hkeys(self._collections(owner)))
        return [c for c in (self.collection(owner, n) for n in names) if c is not None]

    def readable(self, uri: DataUri, reader: str,
                 algorithm_owner: str | None = None) -> Collection:
        """The collection, if `reader` may read it; another owner's private collection
        is not found, one it may not read through this route is forbidden."""
        found = self.collection(uri.owner, uri.collection)
        if found is None or (reader != uri.owner and found.access is Access.PRIVATE
                             and algorithm_owner is None):
            raise DataNotFound(f"no collection data://{uri.owner}/{uri.collection}")
        if not found.readable_by(reader, algorithm_owner):
            raise DataForbidden(f"data://{uri.owner}/{uri.collection} is {found.access.value}")
        return found

    def writable(self, uri: DataUri, writer: str) -> Collection:
        if writer != uri.owner:
            raise DataForbidden(f"only {uri.owner} writes to data://{uri.owner}/...")
        found = self.collection(uri.owner, uri.collection)
        if found is None:
            raise DataNotFound(f"no collection data://{uri.owner}/{uri.collection}; make it "
                               "with `algohost data mkdir`")
        return found

    @translate_errors
    def files(self, uri: DataUri) -> list[DataFile]:
        raw = self.redis.hgetall(self._files(uri.owner, uri.collection))
        prefix = uri.path.rstrip("/")
        found = [DataFile(**json.loads(v)) for k, v in raw.items()
                 if not prefix or k == prefix or k.startswith(prefix + "/")]
        return sorted(found, key=lambda f: f.path)

    @translate_errors
    def file(self, uri: DataUri) -> DataFile:
        raw = self.redis.hget(self._files(uri.owner, uri.collection), uri.path)
        if raw is None:
            raise DataNotFound(f"no file {uri}")
        return DataFile(**json.loads(raw))

    def put(self, uri: DataUri, chunks: Iterable[bytes], media_type: str) -> DataFile:
        record = self.artifacts.put(uri.owner, chunks, name=uri.path, media_type=media_type)
        entry = DataFile(uri.path, record.sha256, record.size, media_type, now_iso())
        ref = f"data:{uri.collection}/{uri.path}"
        old = self.redis.hget(self._files(uri.owner, uri.collection), uri.path)
        self.artifacts.reference(uri.owner, record.sha256, ref)
        self.redis.hset(self._files(uri.owner, uri.collection), uri.path,
                        json.dumps(asdict(entry)))
        if old is not None and json.loads(old)["sha256"] != record.sha256:
            self.artifacts.unreference(uri.owner, json.loads(old)["sha256"], ref)
        return entry

    def read(self, uri: DataUri) -> tuple[DataFile, Iterator[bytes]]:
        entry = self.file(uri)
        return entry, self.artifacts.blobs.chunks(entry.sha256)

    def remove(self, uri: DataUri) -> DataFile:
        entry = self.file(uri)
        self.redis.hdel(self._files(uri.owner, uri.collection), uri.path)
        self.artifacts.unreference(uri.owner, entry.sha256, f"data:{uri.collection}/{uri.path}")
        return entry


PART_BYTES = 256 * 1024
_ERROR_TYPES = {DataNotFound: "FileNotFoundError", DataForbidden: "PermissionError",
                InvalidRequest: "ValueError"}


class DataReads:
    """A running call's `open("data://...")`, answered by the worker with the CALLER's
    rights (and the algorithm's owner, for "algorithms" collections)."""

    def __init__(self, store: DataStore, caller: str, algorithm_owner: str) -> None:
        self.store, self.caller, self.algorithm_owner = store, caller, algorithm_owner

    def __call__(self, msg: dict[str, Any]) -> Iterator[dict[str, Any]]:
        request_id = str(msg.get("id", ""))
        try:
            if msg.get("op") != "data.read":
                raise InvalidRequest(f"unknown request {str(msg.get('op'))[:40]!r}")
            uri = DataUri.parse(str(msg.get("uri", "")), file=True)
            self.store.readable(uri, self.caller, self.algorithm_owner)
            entry, chunks = self.store.read(uri)
        except (DataNotFound, DataForbidden, InvalidRequest) as exc:
            error = {"type": _ERROR_TYPES[type(exc)], "message": exc.message, "traceback": ""}
            yield {"type": "response", "id": request_id, "ok": False, "end": True,
                   "error": error}
            return
        yield from self._parts(request_id, chunks)

    @staticmethod
    def _parts(request_id: str, chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
        pending = b""
        for chunk in chunks:
            pending += chunk
            while len(pending) >= PART_BYTES:
                part, pending = pending[:PART_BYTES], pending[PART_BYTES:]
                yield {"type": "response", "id": request_id, "ok": True, "end": False,
                       "data": base64.b64encode(part).decode("ascii")}
        yield {"type": "response", "id": request_id, "ok": True, "end": True,
               "data": base64.b64encode(pending).decode("ascii")}
