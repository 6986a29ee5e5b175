"""Batches: how inputs are split into chunks, read from a request, and recorded per input."""

import pytest

from algohost.api.batches import BatchUploadQuery, encode_inputs, parse_request
from algohost.config import Settings
from algohost.errors import InvalidRequest, MalformedJSON, PayloadTooLarge, TooManyInputs
from algohost.sandbox.base import CallOutcome, ExitReason
from algohost.store.batches import chunk_ranges
from algohost.worker.batching import item_result
from algohost.worker.redacting import Redactor

SETTINGS = Settings(max_batch_inputs=5)
NDJSON = "application/x-ndjson"


def test_chunks_cover_every_input_once_in_order():
    ranges = chunk_ranges(1000, 200)
    assert ranges == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]


def test_the_last_chunk_holds_the_remainder():
    assert chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_ranges(3, 200) == [(0, 3)]


def test_a_chunk_holds_at_least_one_input():
    with pytest.raises(ValueError):
        chunk_ranges(10, 0)


def test_json_lines_take_their_algorithm_and_options_from_the_query():
    query = BatchUploadQuery(algorithm="alice/hello", webhook="https://h.example/x",
                             webhook_events="started, completed", timeout_s=5)
    batch = parse_request(b'{"a": 1}\n\n2\n"three"\n', NDJSON, query, SETTINGS)
    assert batch.inputs == [{"a": 1}, 2, "three"]
    assert batch.webhook_events == ["started", "completed"]
    assert batch.timeout_s == 5


def test_json_lines_without_an_algorithm_are_rejected():
    with pytest.raises(InvalidRequest, match="algorithm"):
        parse_request(b"1\n", NDJSON, BatchUploadQuery(), SETTINGS)


def test_a_bad_line_is_named():
    with pytest.raises(MalformedJSON, match="line 2"):
        parse_request(b"1\n{oops\n", NDJSON, BatchUploadQuery(algorithm="alice/hello"), SETTINGS)


def test_too_many_inputs_is_a_413_in_either_form():
    with pytest.raises(TooManyInputs) as caught:
        parse_request(b"1\n2\n3\n4\n5\n6\n", NDJSON, BatchUploadQuery(algorithm="a/b"), SETTINGS)
    assert caught.value.http_status == 413
    with pytest.raises(TooManyInputs):
        parse_request(b'{"algorithm": "a/b", "inputs": [1, 2, 3, 4, 5, 6]}',
                      "application/json", BatchUploadQuery(), SETTINGS)


def test_a_json_body_is_validated_strictly():
    with pytest.raises(InvalidRequest, match="inputs"):
        parse_request(b'{"algorithm": "a/b", "inputs": []}', "application/json",
                      BatchUploadQuery(), SETTINGS)
    with pytest.raises(InvalidRequest, match="webhook_events"):
        parse_request(b'{"algorithm": "a/b", "inputs": [1], "webhook_events": ["started"]}',
                      "application/json", BatchUploadQuery(), SETTINGS)
    with pytest.raises(InvalidRequest, match="webhook"):
        parse_request(b'{"algorithm": "a/b", "inputs": [1], "webhook": "ftp://x"}',
                      "application/json", BatchUploadQuery(), SETTINGS)


def test_an_input_larger_than_the_limit_is_named():
    with pytest.raises(PayloadTooLarge, match="input 1"):
        encode_inputs([1, "x" * 100], 50)


def test_a_failing_input_keeps_its_error_and_logs_with_secrets_masked():
    outcome = CallOutcome(ExitReason.EXCEPTION, logs="token s3cr3t leaked",
                          error={"type": "ValueError", "message": "bad s3cr3t",
                                 "traceback": "..."}, run_ms=1.23456, reusable=True)
    result = item_result(outcome, Redactor(["s3cr3t"]))
    assert result["status"] == "failed" and result["reason"] == "exception"
    assert "s3cr3t" not in str(result)
    assert "output" not in result
    assert result["metrics"]["run_ms"] == 1.235


def test_a_succeeded_input_keeps_its_output_only():
    result = item_result(CallOutcome(ExitReason.SUCCEEDED, output={"v": 1}), Redactor())
    assert result["status"] == "succeeded" and result["output"] == {"v": 1}
    assert "error" not in result and "logs" not in result


def test_a_timed_out_input_is_timed_out():
    result = item_result(CallOutcome(ExitReason.TIMEOUT, error={"type": "Timeout",
                                                                "message": "late"}),
                         Redactor())
    assert result["status"] == "timed_out"
