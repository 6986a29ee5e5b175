"""Batches through the whole stack: chunks of inputs run in warm containers by a real worker."""

import time
from pathlib import Path

import docker.errors
import pytest
from standardwebhooks.webhooks import Webhook

from algohost.api import create_app
from algohost.dispatch import BULK_QUEUE, CALLS_QUEUE, RecordingDispatcher, queue_keys
from algohost.store.batches import BatchStore
from tests.receiver import Receiver
from tests.stack import TEST_ALGORITHMS, publish, publish_own
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def refs(stack):
    return {"picky": publish(stack, TEST_ALGORITHMS / "picky"),
            "sleeper": publish(stack, TEST_ALGORITHMS / "sleeper")}


def submit(stack, **body):
    response = stack.client.post("/v1/batches", json=body, headers=stack.auth)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def batch(stack, batch_id):
    return stack.client.get(f"/v1/batches/{batch_id}", headers=stack.auth).get_json()


def batch_when(stack, batch_id, done, timeout_s=180):
    """The batch's record once `done(record)` holds."""
    def ready():
        record = batch(stack, batch_id)
        return record if done(record) else None

    return eventually(ready, timeout_s,
                      lambda: f"{batch(stack, batch_id)} {stack.worker_log()}")


def all_results(stack, batch_id):
    results, cursor = [], "0"
    while cursor is not None:
        page = stack.client.get(f"/v1/batches/{batch_id}/results?cursor={cursor}&limit=300",
                                headers=stack.auth).get_json()
        results += page["results"]
        cursor = page["next_cursor"]
    return results


def test_a_thousand_inputs_with_ten_failing_keep_input_order(stack, refs):
    created = submit(stack, algorithm=refs["picky"], inputs=list(range(1000)))
    record = batch_when(stack, created["id"], lambda b: b["status"] != "running")
    assert record["status"] == "completed" and record["progress"] == 1.0
    assert record["counts"] == {"pending": 0, "succeeded": 990, "failed": 10, "timed_out": 0,
                                "canceled": 0}
    results = all_results(stack, created["id"])
    assert [r["index"] for r in results] == list(range(1000))
    failed = [r["index"] for r in results if r["status"] == "failed"]
    assert failed == [i for i in range(1000) if i % 100 == 7]
    assert results[8]["output"] == {"double": 16}
    assert results[7]["error"]["type"] == "ValueError"
    assert all(r["metrics"]["run_ms"] >= 0 for r in results)


def test_cancel_mid_batch_leaves_no_queued_work_running(stack, refs):
    created = submit(stack, algorithm=refs["sleeper"], inputs=[0.2] * 200)
    batch_when(stack, created["id"], lambda b: b["counts"]["succeeded"] >= 4, timeout_s=120)
    canceled = stack.client.post(f"/v1/batches/{created['id']}/cancel", headers=stack.auth)
    assert canceled.status_code == 200 and canceled.get_json()["status"] == "canceled"
    record = batch_when(stack, created["id"], lambda b: b["counts"]["pending"] == 0,
                        timeout_s=30)
    stack.drain()  # every chunk's task has ended
    later = batch(stack, created["id"])
    assert later["counts"] == record["counts"]  # nothing ran after the chunks stopped
    assert record["counts"]["canceled"] > 100
    assert record["counts"]["succeeded"] + record["counts"]["canceled"] == 200
    # No chunk message is left waiting, at any priority step.
    assert sum(stack.redis.llen(key) for queue in (CALLS_QUEUE, BULK_QUEUE)
               for key in queue_keys(queue)) == 0


def test_a_jsonl_batch_fires_one_signed_completed_webhook(stack, refs):
    hook = Receiver().start()
    try:
        lines = b"\n".join(str(i).encode() for i in range(20)) + b"\n"
        response = stack.client.post(
            f"/v1/batches?algorithm={refs['picky']}&webhook={hook.url}", data=lines,
            headers={**stack.auth, "Content-Type": "application/x-ndjson"})
        assert response.status_code == 202, response.get_json()
        batch_id = response.get_json()["id"]
        [event] = hook.wait_for(1, timeout_s=60)
        secret = stack.client.get("/v1/webhooks/secret", headers=stack.auth).get_json()["secret"]
        body = Webhook(secret).verify(event.body, event.headers)
        assert body["id"] == batch_id and body["status"] == "completed"
        assert body["counts"]["succeeded"] == 19 and body["counts"]["failed"] == 1
        assert event.headers["algohost-event"] == "batch.completed"
        stack.drain()  # no other delivery is queued or scheduled
        assert len(hook.received) == 1
    finally:
        hook.stop()


def test_a_chunk_whose_worker_was_lost_is_run_again_by_the_workers_reaper(stack, refs):
    # Submitted through an API whose messages go nowhere: the chunk's only way to run is
    # the reaper, after a worker "claimed" it and died before recording the rest.
    unsent = create_app(stack.settings, dispatcher=RecordingDispatcher()).test_client()
    response = unsent.post("/v1/batches", json={"algorithm": refs["picky"],
                                                "inputs": list(range(10))}, headers=stack.auth)
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]
    batches = BatchStore(stack.redis, stack.settings.job_retention_s)
    kept = {"status": "succeeded", "reason": "succeeded", "output": "kept"}
    batches.record_results(batch_id, {0: kept}, "2026-01-01T00:00:01.000Z")
    assert batches.claim_chunk(batch_id, 0, 10, until=time.time() - 1, now=time.time()) == 1
    record = batch_when(stack, batch_id, lambda b: b["status"] != "running",
                        timeout_s=stack.settings.lease_s + 60)
    assert record["counts"]["succeeded"] == 9 and record["counts"]["failed"] == 1  # 7 fails
    results = all_results(stack, batch_id)
    assert results[0]["output"] == "kept"
    assert [r["output"]["double"] for r in results[1:] if r["index"] != 7] == [
        2 * i for i in range(1, 10) if i != 7]


def sleeping_container(stack, ref):
    """The build's running container whose algorithm is inside time.sleep right now, read
    from the kernel (each thread's wait channel), so a kill lands mid-input, not at start."""
    for container in stack.containers_of(ref, running_only=True):
        try:
            pids = [row[1] for row in container.top()["Processes"] or []]
        except docker.errors.APIError:
            continue
        for pid in pids:
            for wchan in Path(f"/proc/{pid}/task").glob("*/wchan"):
                try:
                    if "nanosleep" in wchan.read_text():
                        return container
                except OSError:
                    pass
    return None


def test_a_batch_whose_container_is_killed_from_outside_mid_input_succeeds_for_every_input(
        stack, tmp_path):
    # What an engine restart or an operator's `docker kill` does to the chunk's container.
    sleeper = publish_own(stack, TEST_ALGORITHMS / "sleeper", tmp_path, "killed mid-batch")
    created = submit(stack, algorithm=sleeper, inputs=[0, 10, 0])
    container = eventually(lambda: sleeping_container(stack, sleeper), 120,
                           lambda: f"an input asleep in its container: {stack.worker_log()}")
    container.kill()
    record = batch_when(stack, created["id"], lambda b: b["status"] != "running")
    assert record["counts"]["succeeded"] == 3, (record, all_results(stack, created["id"]))
    assert [r["output"] for r in all_results(stack, created["id"])] == [
        {"slept": 0}, {"slept": 10}, {"slept": 0}]
    assert "the sandbox was lost" in stack.worker_log()  # run again, not by chance


def test_files_a_batch_input_leaves_under_outputs_are_not_kept_and_its_logs_say_so(stack):
    outputs = publish(stack, TEST_ALGORITHMS / "outputs")
    created = submit(stack, algorithm=outputs,
                     inputs=[{"files": {"a.txt": "one", "b.txt": "two"}}, {}])
    batch_when(stack, created["id"], lambda b: b["status"] != "running")
    wrote, quiet = all_results(stack, created["id"])
    assert wrote["status"] == "succeeded" and wrote["output"] == {"before": []}, wrote
    assert "2 file(s) written to /outputs were not kept" in wrote["logs"]
    assert "logs" not in quiet, quiet
