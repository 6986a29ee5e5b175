"""The one redaction step: every kind of text an algorithm produces is masked before it is
stored, logs are masked before they are cut, and a forged error is reshaped, not trusted."""

import logging

from algohost.errors import ContainerStartFailed
from algohost.sandbox.base import CallOutcome, ExitReason
from algohost.worker.batching import failed_result, item_result
from algohost.worker.redacting import Redactor

SECRET = "hunter2-very-secret"


def test_an_output_is_masked():
    assert Redactor([SECRET]).output({"k": [SECRET]}) == {"k": ["***"]}


def test_an_error_is_masked_and_reshaped_whatever_the_container_sent():
    redactor = Redactor([SECRET])
    assert redactor.error({"type": "E", "message": f"bad {SECRET}", "traceback": SECRET}) == \
        {"type": "E", "message": "bad ***", "traceback": "***"}
    assert redactor.error([SECRET, 1]) == {"type": "Error", "message": "['***', 1]",
                                           "traceback": None}
    assert redactor.error({"message": {"nested": SECRET}})["message"] == "{'nested': '***'}"


def test_logs_are_masked_before_they_are_cut_so_no_tail_of_a_secret_survives():
    text = "x" * 50 + SECRET + "y" * 5
    logs = Redactor([SECRET]).logs(text, limit=10)
    assert "secret" not in logs and logs.endswith("***yyyyy")


def test_logs_the_container_already_cut_lose_the_split_secret_at_their_start():
    # The runner kept a tail that begins in the middle of the secret: that end is dropped.
    logs = Redactor([SECRET]).logs(SECRET[6:] + " then " + SECRET + " end", dropped=100)
    assert "very" not in logs and logs.endswith("*** end")
    assert logs.startswith("[algohost: ")


def test_a_worker_failure_of_a_batch_input_is_masked():
    # Before: failed_result stored str(exc) as it was, a secret quoted by an import error too.
    exc = ContainerStartFailed(f"ValueError: cannot use {SECRET}")
    result = failed_result(exc, "start_failed", Redactor([SECRET]))
    assert SECRET not in str(result) and result["error"]["type"] == "ContainerStartFailed"


def test_a_failed_batch_input_masks_its_error_and_logs():
    outcome = CallOutcome(ExitReason.EXCEPTION, logs="a" * 5000 + SECRET,
                          error={"type": "ValueError", "message": SECRET, "traceback": ""})
    result = item_result(outcome, Redactor([SECRET]))
    assert SECRET not in str(result) and result["logs"].endswith("***")


def test_a_worker_side_exception_is_logged_masked_and_without_a_traceback(caplog):
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError(f"could not convert string to float: '{SECRET}'")
        except ValueError as exc:
            Redactor([SECRET]).log_exception(logging.getLogger("t"), "input %d failed", 3,
                                             exc=exc)
    assert SECRET not in caplog.text and "input 3 failed" in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
