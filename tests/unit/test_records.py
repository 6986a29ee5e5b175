"""Typed records and their Redis form: each round-trips, and records already in Redis load."""

import json

import pytest

from algohost.manifest import Manifest
from algohost.public import Batch, Build, Job, public_batch, public_build, public_job
from algohost.store import decode_value, encode_value
from algohost.store.batches import BATCH_FIELDS, BatchRecord, BatchStatus
from algohost.store.jobs import JOB_FIELDS, JobRecord, JobStatus, stored_job
from algohost.store.keys import ApiKeyRecord
from algohost.store.registry import BUILD_FIELDS, BuildRecord, BuildStatus
from algohost.store.webhooks import DeliveryRecord, DeliveryState

# A job hash exactly as the code before typed records wrote it (api/jobs.py, then a worker
# claimed and finished it): every field JSON text, no `worker` while it was queued.
OLD_JOB_HASH = {
    "id": '"j_0123456789abcdef01234567"', "owner": '"alice"',
    "requested": '"alice/hello@latest"', "algorithm": '"alice/hello@1.2.3"',
    "build_id": '"b_0123456789abcdef0123"', "image": '"algohost/alice/hello:0123456789abcdef"',
    "status": '"succeeded"', "reason": '"succeeded"', "input": '{"x":1}',
    "output": '{"y":2}', "error": "null", "logs": '"hi\\n"',
    "created_at": '"2026-11-29T15:00:00.000Z"', "started_at": '"2026-11-29T15:00:00.001Z"',
    "finished_at": '"2026-11-29T15:00:00.004Z"', "warm": "true", "timeout_s": "30",
    "attempts": "1",
    "metrics": '{"queue_ms":0.5,"cold_start_ms":0.0,"run_ms":1.0,"peak_memory_bytes":10,'
               '"total_ms":3.0}',
    "webhook": "null", "webhook_events": "[]", "worker": '"w-1"',
}


def full_job() -> JobRecord:
    return JobRecord(
        id="j_1", owner="alice", status=JobStatus.FAILED, requested="alice/hello",
        algorithm="alice/hello@0.1.0", build_id="b_1", image="algohost/alice/hello:abc",
        input={"x": [1, 2.5, None, "ü"]}, output=None,
        error={"type": "ValueError", "message": "bad", "traceback": "Traceback..."},
        logs="a\nb", reason="exception", created_at="2026-01-01T00:00:00.000Z",
        started_at="2026-01-01T00:00:00.001Z", finished_at="2026-01-01T00:00:00.002Z",
        warm=False, timeout_s=5, attempts=2,
        metrics={"queue_ms": 0.1, "run_ms": 1.0, "total_ms": 2.0},
        webhook="https://hooks.example/x", webhook_events=["started", "completed"],
        worker="w-1")


def test_a_job_record_round_trips_through_its_redis_form():
    job = full_job()
    assert JobRecord.from_redis(job.to_redis()) == job


def test_every_field_is_json_text_in_redis():
    raw = full_job().to_redis()
    assert set(raw) == set(JOB_FIELDS.names)
    assert raw["status"] == '"failed"' and raw["warm"] == "false" and raw["attempts"] == "2"
    assert {name: json.loads(text) for name, text in raw.items()}["input"] == {
        "x": [1, 2.5, None, "ü"]}


def test_a_job_written_by_the_previous_code_loads_unchanged():
    job = JobRecord.from_redis(OLD_JOB_HASH)
    assert job.status is JobStatus.SUCCEEDED and job.output == {"y": 2}
    assert job.metrics is not None and job.metrics["total_ms"] == 3.0
    assert job.artifacts == [] and job.parent is None  # written before these fields
    assert job.to_redis() == {**OLD_JOB_HASH, "artifacts": "[]", "parent": "null",
                              "custom_metrics": "{}", "royalty_micros": "0",
                              "parent_job": "null", "children": "[]", "depth": "0"}


def test_a_job_missing_later_fields_loads_with_their_defaults():
    older = {k: v for k, v in OLD_JOB_HASH.items()
             if k not in ("webhook", "webhook_events", "worker", "attempts")}
    job = JobRecord.from_redis(older)
    assert (job.webhook, job.webhook_events, job.worker, job.attempts) == (None, [], None, 0)


def test_fields_this_code_does_not_know_are_skipped():
    job = JobRecord.from_redis({**OLD_JOB_HASH, "lease": "12.5", "artifacts": "[]"})
    assert job == JobRecord.from_redis(OLD_JOB_HASH)


def test_attempts_counted_by_hincrby_read_as_numbers():
    assert JobRecord.from_redis({**OLD_JOB_HASH, "attempts": "3"}).attempts == 3


def test_a_partial_write_naming_a_field_the_record_lacks_is_a_bug():
    JOB_FIELDS.check(["logs", "warm", "metrics"])
    with pytest.raises(ValueError, match="outptu"):
        JOB_FIELDS.check(["outptu"])


def test_every_field_of_the_public_job_is_read_from_the_record():
    assert set(Job.model_fields) <= set(JOB_FIELDS.names)
    shown = public_job(full_job(), include_input=True)
    assert shown.input == full_job().input and shown.status is JobStatus.FAILED
    assert "owner" not in Job.model_fields and "worker" not in Job.model_fields


# A build hash as the code before typed records wrote it, then marked succeeded.
OLD_BUILD_HASH = {
    "id": '"b_0123456789abcdef0123"', "owner": '"alice"', "name": '"hello"',
    "version": '"1.2.3"', "ref": '"alice/hello@1.2.3"', "content_hash": '"c0ffee"',
    "image": '"algohost/alice/hello:c0ffee"', "status": '"succeeded"',
    "created_at": '"2026-11-29T15:00:00.000Z"', "started_at": '"2026-11-29T15:00:01.000Z"',
    "finished_at": '"2026-11-29T15:00:09.000Z"',
    "manifest": '{"name":"hello","entrypoint":"main:apply","python":"3.11",'
                '"build":{"python_packages":["numpy==2.1.*"],"requirements":null,'
                '"system_packages":[]},"resources":{"timeout_s":30,"memory_mb":512,'
                '"cpus":1.0,"network":false},"secrets":{"names":["TOKEN"],"as_env":false}}',
    "error": "null", "image_id": '"sha256:abc"',
}


def test_a_build_record_round_trips_with_its_manifest_typed():
    build = BuildRecord.from_redis(OLD_BUILD_HASH)
    assert isinstance(build.manifest, Manifest)
    assert build.manifest.resources.timeout_s == 30 and build.manifest.secrets.names == ["TOKEN"]
    assert BuildRecord.from_redis(build.to_redis()) == build


def test_a_build_written_by_the_previous_code_keeps_its_redis_form():
    stored = BuildRecord.from_redis(OLD_BUILD_HASH).to_redis()
    assert {k: json.loads(v) for k, v in stored.items() if k in OLD_BUILD_HASH} == {
        k: json.loads(v) for k, v in OLD_BUILD_HASH.items()}
    assert json.loads(stored["deleted_at"]) is None


def test_a_build_missing_later_fields_or_carrying_unknown_ones_loads():
    older = {k: v for k, v in OLD_BUILD_HASH.items() if k not in ("image_id", "error")}
    build = BuildRecord.from_redis({**older, "pinned": "true"})
    assert build.image_id is None and build.error is None and build.status is BuildStatus.SUCCEEDED


def test_the_public_build_shows_the_manifest_as_its_table():
    shown = public_build(BuildRecord.from_redis(OLD_BUILD_HASH), logs="ok\n")
    derived = {"logs", "matches_local"}  # read beside the record, or computed from two fields
    assert set(Build.model_fields) - derived <= set(BUILD_FIELDS.names)
    assert shown.manifest["build"]["python_packages"] == ["numpy==2.1.*"] and shown.logs == "ok\n"


# A batch hash and a delivery hash as the code before typed records wrote them.
OLD_BATCH_HASH = {
    "id": '"b_0123456789abcdef01234567"', "owner": '"alice"', "requested": '"alice/hello"',
    "algorithm": '"alice/hello@1.2.3"', "build_id": '"b_0123456789abcdef0123"',
    "status": '"completed"', "reason": "null", "total": "1000",
    "created_at": '"2026-11-29T15:00:00.000Z"', "finished_at": '"2026-11-29T15:01:00.000Z"',
    "timeout_s": "30", "webhook": '"https://hooks.example/b"', "webhook_events": '["completed"]',
}
OLD_DELIVERY_HASH = {
    "id": '"msg_0123"', "subject": '"job:j_1"', "owner": '"alice"', "event": '"completed"',
    "url": '"https://hooks.example/x"', "body": '"{\\"id\\":\\"j_1\\"}"', "state": '"pending"',
    "generation": "1", "attempts": "3", "round_start": "2",
    "created_at": '"2026-11-29T15:00:00.000Z"', "next_attempt_at": '"2026-11-29T15:00:05.000Z"',
    "last_error": '"HTTP 500"', "updated_at": '"2026-11-29T15:00:00.500Z"',
}


def test_a_batch_written_by_the_previous_code_round_trips():
    batch = BatchRecord.from_redis(OLD_BATCH_HASH)
    assert batch.status is BatchStatus.COMPLETED and batch.total == 1000
    assert batch.webhook_events == ["completed"]
    stored = batch.to_redis()  # the old fields keep their form; later ones take defaults
    assert {k: v for k, v in stored.items() if k in OLD_BATCH_HASH} == OLD_BATCH_HASH
    assert stored["royalty_micros"] == "0"


def test_a_batch_missing_its_webhook_fields_loads_without_them():
    older = {k: v for k, v in OLD_BATCH_HASH.items() if not k.startswith("webhook")}
    batch = BatchRecord.from_redis({**older, "priority": "3"})
    assert (batch.webhook, batch.webhook_events) == (None, [])


def test_every_field_of_the_public_batch_comes_from_the_record_or_its_counts():
    shown = public_batch(BatchRecord.from_redis(OLD_BATCH_HASH), {"succeeded": 990, "failed": 10})
    assert shown.counts.pending == 0 and shown.progress == 1.0
    assert set(Batch.model_fields) - {"counts", "progress"} <= set(BATCH_FIELDS.names)


def test_a_delivery_written_by_the_previous_code_round_trips():
    delivery = DeliveryRecord.from_redis(OLD_DELIVERY_HASH)
    assert delivery.state is DeliveryState.PENDING and delivery.generation == 1
    assert (delivery.attempts, delivery.round_start, delivery.body) == (3, 2, '{"id":"j_1"}')
    assert delivery.to_redis() == OLD_DELIVERY_HASH


def test_a_delivery_never_attempted_has_no_update_time():
    fresh = {k: v for k, v in OLD_DELIVERY_HASH.items() if k != "updated_at"}
    assert DeliveryRecord.from_redis(fresh).updated_at is None


VALUES = [None, True, False, 0, -7, 2**70, 1.5, 1e-7, float("inf"), "", "ü\n\"'\\", "a" * 300,
          [], {}, {"x": [1, 2.5, None, "é"], "y": {"z": True}}, JobStatus.QUEUED,
          BuildStatus.FAILED]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_the_field_codec_writes_exactly_what_json_dumps_writes_and_reads_it_back(value):
    text = encode_value(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert decode_value(text) == json.loads(text)


@pytest.mark.parametrize("text", [' "padded" ', "1 ", "\t[1]"])
def test_the_field_codec_reads_text_written_by_other_hands(text):
    assert decode_value(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "tru", '"open', "1 2", "[1]x"])
def test_the_field_codec_refuses_what_is_not_json(text):
    with pytest.raises(json.JSONDecodeError):
        decode_value(text)


def test_a_value_that_is_not_json_is_refused_on_writing():
    with pytest.raises(TypeError, match="set"):
        encode_value({1, 2})


def test_an_api_key_written_by_the_previous_code_loads():
    # json.dumps with its default separators, as KeyStore.create wrote it before.
    old = '{"owner": "alice", "created_at": "2026-11-29T15:00:00.000Z", "prefix": "ak_AbCd"}'
    record = ApiKeyRecord.from_json(old)
    assert (record.owner, record.prefix) == ("alice", "ak_AbCd")
    assert ApiKeyRecord.from_json(record.to_json()) == record
    assert ApiKeyRecord.from_json('{"owner": "bob", "scopes": []}') == ApiKeyRecord("bob")


def test_a_hash_left_by_a_late_write_to_an_expired_job_is_no_job():
    assert stored_job({"logs": '""', "warm": "true"}) is None
    assert stored_job({}) is None
    assert stored_job(OLD_JOB_HASH) == JobRecord.from_redis(OLD_JOB_HASH)
