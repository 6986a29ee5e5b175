"""Artifacts over HTTP: stream a blob in, stream one out, list them with their lineage.

Bytes are read and written in chunks, never whole and never through Redis; an owner
sees only its own artifacts (another owner's digest is a 404, not a 403).
"""

from __future__ import annotations

from typing import IO, TypeVar
from urllib.parse import quote

from flask import Blueprint, request

from algohost.api.auth import current_owner
from algohost.api.context import services
from algohost.api.routing import BinaryContent, Reply, Streamed, Upload, route
from algohost.api.schemas import (
    Artifact,
    ArtifactList,
    ArtifactListQuery,
    ArtifactUploadQuery,
    lineage_artifact,
    public_artifact,
)
from algohost.artifacts.blobs import is_digest, read_chunks
from algohost.artifacts.lineage import LineageIndex
from algohost.artifacts.store import ArtifactStore
from algohost.errors import InvalidRequest, ServiceUnavailable
from algohost.names import SHA256

bp = Blueprint("artifacts", __name__)

UPLOAD = Upload(("*/*",), "The content itself, in any media type (sent as Content-Type); "
                         "streamed, within the owner's artifact quota", streamed=True,
                required=False)  # empty content is an artifact too
DIGEST_PATH = {"sha256": rf"^(?:sha256:)?{SHA256.pattern.pattern}$"}
T = TypeVar("T")


def configured(part: T | None) -> T:
    """A part of the artifact store (blobs, lineage, models, data), or 503 without one."""
    if part is None:
        raise ServiceUnavailable("this API has no artifact store configured")
    return part


def artifact_store() -> ArtifactStore:
    return configured(services().artifacts)


def lineage_index() -> LineageIndex:
    return configured(services().lineage)


def checked_digest(sha256: str) -> str:
    digest = sha256.removeprefix("sha256:")
    if not is_digest(digest):
        raise InvalidRequest("an artifact is named by 64 lowercase hex digits of its sha256",
                             sha256=sha256[:80])
    return digest


@route(bp, "POST", "/v1/artifacts", summary="Upload an artifact (streamed, deduplicated)",
       body=UPLOAD, query=ArtifactUploadQuery, responses={201: Artifact}, errors=(503,))
def upload_artifact(body: IO[bytes], query: ArtifactUploadQuery) -> Reply:
    record = artifact_store().put(current_owner(), read_chunks(body), name=query.name,
                                  media_type=request.mimetype or "application/octet-stream")
    return Reply(public_artifact(record), 201,
                 {"Location": f"/v1/artifacts/{record.sha256}"})


@route(bp, "GET", "/v1/artifacts/<sha256>", summary="Download an artifact (streamed)",
       responses={200: BinaryContent}, path=DIGEST_PATH,
       response_headers={"Content-Length": "The size in bytes",
                         "ETag": "The sha256 of the content",
                         "Content-Disposition": "The artifact's name"},
       errors=(404, 503))
def download_artifact(sha256: str) -> Streamed:
    record, chunks = artifact_store().stream(current_owner(), checked_digest(sha256))
    return Streamed(chunks, record.media_type, {
        "Content-Length": str(record.size), "ETag": f'"sha256:{record.sha256}"',
        "Content-Disposition": attachment(record.name.rsplit("/", 1)[-1] or record.sha256)})


def attachment(name: str) -> str:
    """A Content-Disposition for any name: a printable-ASCII `filename` for old clients
    and the exact name as RFC 8187 UTF-8 in `filename*`. A name is the uploader's text, so
    a control character or a non-Latin-1 one must never reach the header as it is."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    exact = quote(name.encode("utf-8", "surrogatepass"), safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


@route(bp, "GET", "/v1/artifacts/<sha256>/info", summary="An artifact's record",
       responses={200: Artifact}, errors=(404, 503), path=DIGEST_PATH)
def artifact_info(sha256: str) -> Reply:
    return Reply(public_artifact(artifact_store().get(current_owner(), checked_digest(sha256))))


@route(bp, "GET", "/v1/artifacts", summary="Your artifacts, newest first; filter by lineage",
       query=ArtifactListQuery, responses={200: ArtifactList}, errors=(503,))
def list_artifacts(query: ArtifactListQuery) -> Reply:
    store, owner = artifact_store(), current_owner()
    if not (query.algorithm or query.input_sha256 or query.job):
        records = store.index.list_for_owner(owner, query.limit)
        return Reply(ArtifactList(artifacts=[public_artifact(r) for r in records]))
    lineage = lineage_index()
    entries = lineage.query(owner, algorithm=query.algorithm, input_sha256=query.input_sha256,
                            job=query.job, limit=query.limit)
    found = []
    for entry in entries:
        record = store.index.get(owner, entry.sha256)
        if record is None:  # collected since: the entry goes too
            lineage.remove(owner, entry)
            continue
        found.append(lineage_artifact(entry, record.references))
    return Reply(ArtifactList(artifacts=found))

