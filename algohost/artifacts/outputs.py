"""The worker's side of a running call: files from /outputs become the job's artifacts.

Parts arrive over the runner's channel; this side counts and hashes them itself (the
container's own figures are never trusted), spools each file to a temporary file on
the worker host and stores it when it is complete. Past the caps the call is aborted.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, NoReturn

from algohost.artifacts.blobs import read_chunks
from algohost.artifacts.data import DataReads, DataStore
from algohost.artifacts.lineage import LineageEntry, LineageIndex, input_digest
from algohost.artifacts.models import MODELS_DIR, ModelCache, ModelRegistry
from algohost.artifacts.records import Lineage
from algohost.artifacts.store import ArtifactStore
from algohost.errors import BlobTooLarge
from algohost.sandbox.base import CallAborted, CallPeer, ExitReason
from algohost.sandbox.runner import protocol
from algohost.store.jobs import ArtifactInfo, JobRecord
from algohost.store.registry import BuildRecord

Requests = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]


def media_type_of(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 512:
        raise CallAborted(ExitReason.CRASHED, "an artifact part without a usable name")
    normal = posixpath.normpath(name)
    if normal.startswith(("/", "../")) or normal in (".", ".."):
        raise CallAborted(ExitReason.CRASHED, f"an artifact name outside /outputs: {name!r}")
    return normal


class RequestRouter:
    """A call's requests, each op to its handler; an op without one is refused."""

    def __init__(self, handlers: Mapping[str, Requests]) -> None:
        self.handlers = dict(handlers)

    def __call__(self, msg: dict[str, Any]) -> Iterable[dict[str, Any]]:
        handler = self.handlers.get(str(msg.get("op")))
        if handler is None:
            error = protocol.error_info("ValueError",
                                        f"unknown request {str(msg.get('op'))[:40]!r}")
            return [{"type": protocol.RESPONSE, "id": msg.get("id", ""), "ok": False,
                     "end": True, "error": error}]
        return handler(msg)


class CallRequests(CallPeer):
    """A batch input's peer: its requests go to the router; its /outputs files are not
    kept (a batch stores no artifacts), as without a peer."""

    def __init__(self, router: RequestRouter) -> None:
        self.router = router
        self.dropped = 0  # files under /outputs the call left, counted to be told, not kept

    def handle(self, msg: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if msg["type"] == protocol.REQUEST:
            return self.router(msg)
        if msg["type"] == protocol.ARTIFACT and msg.get("end"):
            self.dropped += 1
        return []


class JobOutputs(CallPeer):
    """Collects one call's artifacts; `artifacts` lists what was stored, in order."""

    def __init__(self, store: ArtifactStore, lineage: LineageIndex, job: JobRecord,
                 build: BuildRecord, max_count: int, max_bytes: int,
                 requests: Requests | None = None) -> None:
        self.store, self.lineage, self.job, self.build = store, lineage, job, build
        self.max_count, self.max_bytes = max_count, max_bytes
        self.requests = requests
        self.artifacts: list[ArtifactInfo] = []
        self.received = 0
        self._open: dict[str, IO[bytes]] = {}
        self._names: set[str] = set()
        self._input_sha256 = input_digest(job.input)

    def handle(self, msg: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if msg["type"] == protocol.REQUEST:
            if self.requests is None:
                error = protocol.error_info("Unavailable", "this call cannot make requests")
                return [{"type": protocol.RESPONSE, "id": msg.get("id", ""), "ok": False,
                         "end": True, "error": error}]
            return self.requests(msg)
        self._part(checked_name(msg.get("name")), msg.get("data"), bool(msg.get("end")))
        return []

    def _part(self, name: str, data: Any, end: bool) -> None:
        try:
            chunk = base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallAborted(ExitReason.CRASHED, f"artifact {name}: bad part") from exc
        spool = self._open.get(name)
        if spool is None:
            if name in self._names or len(self._names) >= self.max_count:
                self._too_large(f"more than {self.max_count} files under /outputs")
            self._names.add(name)
            spool = self._open[name] = tempfile.TemporaryFile(prefix="algohost-artifact-")
        self.received += len(chunk)
        if self.received > self.max_bytes:
            self._too_large(f"more than {self.max_bytes} bytes under /outputs")
        spool.write(chunk)
        if end:
            del self._open[name]
            with spool:
                spool.seek(0)
                self._store(name, spool)

    def _store(self, name: str, spool: IO[bytes]) -> None:
        owner, job_id = self.job.owner, self.job.id
        lineage = Lineage(job=job_id, algorithm=self.build.ref, build_id=self.build.id,
                          input_sha256=self._input_sha256)
        try:
            record = self.store.put(owner, read_chunks(spool), name=name,
                                    media_type=media_type_of(name), creator=f"job:{job_id}",
                                    lineage=lineage)
        except BlobTooLarge as exc:
            self._too_large(exc.message)
        self.store.reference(owner, record.sha256, f"job:{job_id}")
        entry = LineageEntry(job=job_id, name=name, sha256=record.sha256, size=record.size,
                             media_type=media_type_of(name), algorithm=lineage.algorithm,
                             build_id=lineage.build_id, input_sha256=self._input_sha256,
                             created_at=record.created_at)
        self.lineage.add(owner, entry)
        self.artifacts.append({"name": name, "sha256": record.sha256, "size": record.size,
                               "media_type": entry.media_type,
                               "url": f"/v1/artifacts/{record.sha256}"})

    def _too_large(self, message: str) -> NoReturn:
        self.close()
        raise CallAborted(ExitReason.ARTIFACTS_TOO_LARGE, message)

    def close(self) -> None:
        """Drop parts of files that never completed (the call died or was aborted)."""
        for spool in self._open.values():
            spool.close()
        self._open.clear()

    def discard(self) -> None:
        """The call failed after all: what it stored is no longer the job's."""
        self.close()
        owner, job_id = self.job.owner, self.job.id
        for artifact in self.artifacts:
            self.store.unreference(owner, artifact["sha256"], f"job:{job_id}")
        self.artifacts = []


class Outputs:
    """The worker's one place for what a call takes from and gives to the store: the
    build's models (mounted), the call's artifacts and its requests."""

    def __init__(self, store: ArtifactStore, lineage: LineageIndex, max_count: int,
                 max_bytes: int, models: ModelRegistry, model_cache: ModelCache,
                 data: DataStore | None = None) -> None:
        self.store, self.lineage = store, lineage
        self.max_count, self.max_bytes, self.data = max_count, max_bytes, data
        self.models, self.model_cache = models, model_cache

    def mounts(self, build: BuildRecord) -> tuple[tuple[str, str], ...]:
        """Each pinned model, unpacked once per digest on this host, read-only in /models."""
        mounts = []
        for key, ref in sorted(build.manifest.models.items()):
            version = self.models.resolve(build.owner, ref)
            mounts.append((str(self.model_cache.path(version)), f"{MODELS_DIR}/{key}"))
        return tuple(mounts)

    def for_job(self, job: JobRecord, build: BuildRecord,
                requests: Mapping[str, Requests] | None = None) -> JobOutputs:
        """The call's peer: its artifacts, `data://` reads, and the `requests` (by op)
        the caller adds."""
        handlers = dict(requests or {})
        if self.data is not None:
            handlers[protocol.OP_DATA_READ] = DataReads(self.data, job.owner, build.owner)
        return JobOutputs(self.store, self.lineage, job, build, self.max_count,
                          self.max_bytes, RequestRouter(handlers) if handlers else None)

    def for_batch(self, owner: str, build: BuildRecord,
                  requests: Mapping[str, Requests]) -> CallRequests:
        """A batch input's peer: `data://` reads with the batch owner's (the caller's)
        rights, and the `requests` (by op) the caller adds. Nothing here reaches Redis
        until the algorithm asks for something."""
        handlers = dict(requests)
        if self.data is not None:
            handlers[protocol.OP_DATA_READ] = DataReads(self.data, owner, build.owner)
        return CallRequests(RequestRouter(handlers))
