"""Data collections over HTTP: make one, list it, stream files in and out, remove them.

`data://OWNER/COLLECTION/PATH` maps to /v1/data/OWNER/COLLECTION/PATH. Only the owner
writes; reading follows the collection's access rule (a key reads its own and public
collections; "algorithms" collections are read by the owner's algorithms in calls).
"""

from __future__ import annotations

from typing import IO

from flask import Blueprint, request

from algohost.api.artifacts import UPLOAD, configured
from algohost.api.auth import current_owner, require_owner
from algohost.api.context import services
from algohost.api.routing import BinaryContent, Reply, Streamed, route
from algohost.api.schemas import (
    CollectionList,
    CollectionMake,
    CollectionView,
    DataFileView,
    DataListing,
    DataListQuery,
    public_collection,
    public_data_file,
)
from algohost.artifacts.blobs import read_chunks
from algohost.artifacts.data import Access, DataStore
from algohost.names import COLLECTION_PATTERN, DATA_PATH_PATTERN, OWNER, DataUri

OWNER_PATTERN = rf"^{OWNER.pattern.pattern}$"

bp = Blueprint("data", __name__)
COLLECTION_PATH = {"owner": OWNER_PATTERN, "collection": COLLECTION_PATTERN}
FILE_PATH = {**COLLECTION_PATH, "path": DATA_PATH_PATTERN}

def data_store() -> DataStore:
    return configured(services().data)


def uri_of(owner: str, collection: str, path: str = "", file: bool = False) -> DataUri:
    OWNER.check(owner)
    return DataUri.parse(f"data://{owner}/{collection}" + (f"/{path}" if path else ""),
                         file=file)


@route(bp, "GET", "/v1/data/<owner>", summary="Your data collections",
       responses={200: CollectionList}, errors=(403,), path={"owner": OWNER_PATTERN})
def list_collections(owner: str) -> Reply:
    require_owner(owner, f"the collections of {owner}")
    found = data_store().collections(owner)
    return Reply(CollectionList(collections=[public_collection(c) for c in found]))


@route(bp, "PUT", "/v1/data/<owner>/<collection>",
       summary="Make a collection, or change its access rule", body=CollectionMake,
       responses={201: CollectionView, 200: CollectionView}, errors=(403,),
       path=COLLECTION_PATH)
def make_collection(owner: str, collection: str, body: CollectionMake) -> Reply:
    require_owner(owner, f"data://{owner}/{collection}")
    uri = uri_of(owner, collection)
    found, created = data_store().make(uri.owner, uri.collection, Access(body.access))
    return Reply(public_collection(found), 201 if created else 200)


@route(bp, "GET", "/v1/data/<owner>/<collection>",
       summary="List a collection's files (its access rule permitting)", query=DataListQuery,
       responses={200: DataListing}, errors=(403, 404), path=COLLECTION_PATH)
def list_collection(owner: str, collection: str, query: DataListQuery) -> Reply:
    store = data_store()
    uri = uri_of(owner, collection, query.prefix.strip("/"))
    found = store.readable(uri, current_owner())
    return Reply(DataListing(collection=public_collection(found),
                             files=[public_data_file(uri, f) for f in store.files(uri)]))


@route(bp, "PUT", "/v1/data/<owner>/<collection>/<path:path>",
       summary="Upload a file into a collection (streamed)", body=UPLOAD,
       responses={201: DataFileView}, errors=(403, 404), path=FILE_PATH)
def put_file(owner: str, collection: str, path: str, body: IO[bytes]) -> Reply:
    store = data_store()
    uri = uri_of(owner, collection, path, file=True)
    store.writable(uri, current_owner())
    entry = store.put(uri, read_chunks(body), request.mimetype or "application/octet-stream")
    return Reply(public_data_file(uri, entry), 201)


@route(bp, "GET", "/v1/data/<owner>/<collection>/<path:path>",
       summary="Download a file (streamed; its access rule permitting)",
       responses={200: BinaryContent},
       response_headers={"Content-Length": "The size in bytes",
                         "ETag": "The sha256 of the content"},
       errors=(403, 404), path=FILE_PATH)
def get_file(owner: str, collection: str, path: str) -> Streamed:
    store = data_store()
    uri = uri_of(owner, collection, path, file=True)
    store.readable(uri, current_owner())
    entry, chunks = store.read(uri)
    return Streamed(chunks, entry.media_type, {"Content-Length": str(entry.size),
                                               "ETag": f'"sha256:{entry.sha256}"'})


@route(bp, "DELETE", "/v1/data/<owner>/<collection>/<path:path>",
       summary="Remove a file from a collection", responses={200: DataFileView},
       errors=(403, 404), path=FILE_PATH)
def delete_file(owner: str, collection: str, path: str) -> Reply:
    store = data_store()
    uri = uri_of(owner, collection, path, file=True)
    store.writable(uri, current_owner())
    return Reply(public_data_file(uri, store.remove(uri)))
