"""The artifact store's contract, run against a local directory and fsspec's memory://."""

import hashlib
import io
import uuid

import pytest

from algohost.artifacts.blobs import BlobStore
from algohost.artifacts.gc import collect, records_alive
from algohost.artifacts.records import ArtifactIndex
from algohost.artifacts.store import ArtifactStore
from algohost.errors import ArtifactNotFound, BlobTooLarge, QuotaExceeded


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "memory"])
def blob_url(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "blobs")
        return
    url = f"memory://algohost-test-{uuid.uuid4().hex}"
    yield url
    BlobStore(url).fs.rm(url, recursive=True)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(blob_url, redis_client, clock):
    return ArtifactStore(BlobStore(blob_url), ArtifactIndex(redis_client), quota_bytes=10_000,
                         clock=clock)


def chunks(data: bytes, size: int = 7):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_a_blob_is_named_by_its_sha256_and_reads_back_in_chunks(store):
    data = b"hello artifacts " * 100
    record = store.put("alice", chunks(data), name="greeting.txt", media_type="text/plain")
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert (record.size, record.name, record.media_type) == (len(data), "greeting.txt",
                                                             "text/plain")
    got, stream = store.stream("alice", record.sha256)
    assert b"".join(stream) == data and got.creator == "upload"


def test_the_same_content_twice_is_stored_once_and_charged_once(store):
    first = store.put("alice", [b"same"], name="a")
    second = store.put("alice", [b"same"], name="b")
    assert first.sha256 == second.sha256 and second.name == "a"
    assert list(store.blobs.digests()) == [first.sha256]
    assert store.index.usage("alice") == 4


def test_another_owner_does_not_see_a_blob_it_did_not_store(store):
    record = store.put("alice", [b"private"], name="p")
    with pytest.raises(ArtifactNotFound):
        store.get("bob", record.sha256)


def test_an_upload_past_the_owners_quota_is_refused_and_leaves_nothing(store):
    store.put("alice", [b"x" * 9_000], name="big")
    with pytest.raises(QuotaExceeded):
        store.put("alice", chunks(b"y" * 2_000, 500), name="too-much")
    assert len(list(store.blobs.digests())) == 1
    assert store.index.usage("alice") == 9_000
    assert store.put("bob", [b"y" * 2_000], name="fine").size == 2_000


def test_a_per_call_limit_stops_a_stream_early(store):
    with pytest.raises(BlobTooLarge):
        store.put("alice", chunks(b"z" * 100), name="z", limit=50)
    assert list(store.blobs.digests()) == []


def test_gc_deletes_only_unreferenced_blobs_past_their_grace(store, clock, redis_client):
    kept = store.put("alice", [b"kept by a model"], name="kept")
    store.reference("alice", kept.sha256, "model:iris@sha256:" + kept.sha256)
    young = store.put("alice", [b"young"], name="young")
    clock.now += 50
    old = store.put("alice", [b"old and alone"], name="old")
    old_size = old.size
    alive = records_alive(redis_client)

    clock.now += 60  # old: 60 s unreferenced, young: 110 s
    report = collect(store, grace_s=100, alive=alive)
    assert (report.deleted, report.bytes_freed) == (1, young.size)
    assert store.blobs.exists(kept.sha256) and store.blobs.exists(old.sha256)
    with pytest.raises(ArtifactNotFound):
        store.get("alice", young.sha256)

    clock.now += 100
    report = collect(store, grace_s=100, alive=alive)
    assert (report.deleted, report.bytes_freed) == (1, old_size)
    assert list(store.blobs.digests()) == [kept.sha256]
    assert store.index.usage("alice") == kept.size


def test_a_blob_whose_last_reference_goes_is_collected_after_its_grace(store, clock,
                                                                      redis_client):
    record = store.put("alice", [b"model bytes"], name="m")
    store.reference("alice", record.sha256, "model:m")
    clock.now += 1_000
    assert collect(store, 100, records_alive(redis_client)).deleted == 0
    store.unreference("alice", record.sha256, "model:m")
    assert collect(store, 100, records_alive(redis_client)).deleted == 0
    clock.now += 101
    assert collect(store, 100, records_alive(redis_client)).bytes_freed == record.size


def test_a_reference_from_an_expired_job_no_longer_keeps_a_blob(store, clock, redis_client):
    record = store.put("alice", [b"job output"], name="out.txt", creator="job:j_gone")
    store.reference("alice", record.sha256, "job:j_gone")
    redis_client.set("algohost:job:j_live", "x")
    live = store.put("alice", [b"live output"], name="out.txt", creator="job:j_live")
    store.reference("alice", live.sha256, "job:j_live")
    clock.now += 10
    report = collect(store, 5, records_alive(redis_client))
    assert report.references_dropped == 1 and report.deleted == 0
    clock.now += 10
    assert collect(store, 5, records_alive(redis_client)).deleted == 1
    assert list(store.blobs.digests()) == [live.sha256]


def test_a_blob_without_any_record_is_found_and_collected(store, clock, redis_client):
    stray = store.blobs.put_file(io.BytesIO(b"left behind by a crash"))
    assert collect(store, 10, records_alive(redis_client)).deleted == 0
    clock.now += 11
    report = collect(store, 10, records_alive(redis_client))
    assert (report.deleted, report.bytes_freed) == (1, stray.size)
