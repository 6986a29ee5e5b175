"""Batch inputs make the platform's in-call requests as jobs do, with the batch owner's rights."""

import pytest

from tests.integration.test_batches import all_results, batch_when, submit
from tests.integration.test_data import make, upload
from tests.stack import TEST_ALGORITHMS, publish

pytestmark = pytest.mark.integration


def test_a_batch_whose_algorithm_logs_metrics_succeeds_for_every_input(stack):
    paced = publish(stack, TEST_ALGORITHMS / "paced")
    created = submit(stack, algorithm=paced, inputs=[1, 2, 3, "bad-metric"])
    record = batch_when(stack, created["id"], lambda b: b["status"] != "running")
    assert record["counts"]["succeeded"] == 4, record
    results = all_results(stack, created["id"])
    assert [r["output"] for r in results[:3]] == [{"slept_ms": 20.0}] * 3
    # Checked as for jobs: a bad name is refused to the algorithm, which goes on.
    assert "log_metric('Not A Name')" in results[3]["output"]["refused"]


def test_batch_inputs_read_data_with_the_owners_rights_but_make_no_nested_calls(stack):
    reader = publish(stack, TEST_ALGORITHMS / "datareader")
    nested = publish(stack, TEST_ALGORITHMS / "nested")
    other = f"{stack.owner}-other"
    make(stack, stack.key, stack.owner, "batchin", "private")
    upload(stack, stack.key, f"{stack.owner}/batchin/note.txt", "batch words")
    make(stack, stack.other_key, other, "batchout", "private")
    upload(stack, stack.other_key, f"{other}/batchout/secret.txt", "not for alice")

    created = submit(stack, algorithm=reader,
                     inputs=[{"uri": f"data://{stack.owner}/batchin/note.txt"},
                             {"uri": f"data://{other}/batchout/secret.txt"}])
    batch_when(stack, created["id"], lambda b: b["status"] != "running")
    own, refused = all_results(stack, created["id"])
    assert own["output"] == {"text": "batch words"}, own
    assert refused["output"]["refused"] == "PermissionError", refused

    created = submit(stack, algorithm=nested,
                     inputs=[{"target": reader, "payload": {}, "catch": True}])
    batch_when(stack, created["id"], lambda b: b["status"] != "running")
    [result] = all_results(stack, created["id"])
    assert result["output"]["code"] == "nested_call_in_batch", result
    assert result["output"]["status"] == 400
    assert "not available in batches" in result["output"]["message"]
