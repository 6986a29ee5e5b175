"""`algohost_runtime.log_metric` end to end on the host: the real runner in a subprocess,
its requests answered by the worker's own handler, as the sandbox would relay them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from algohost.artifacts.outputs import RequestRouter
from algohost.sandbox.runner import protocol
from algohost.worker.reported import ReportedMetrics
from tests.unit.test_runner_protocol import Runner

ALGORITHM = """
import algohost_runtime as ah

def apply(input):
    refused = []
    for name, value in input:
        try:
            ah.log_metric(name, value)
        except ValueError as exc:
            refused.append(str(exc))
    return refused
"""


def call_answering(runner: Runner, payload: Any, handler: RequestRouter) -> dict[str, Any]:
    runner.send({"type": protocol.CALL, "id": "c1", "input": payload})
    while True:
        msg = runner.receive()
        if msg["type"] != protocol.REQUEST:
            return msg
        for reply in handler(msg):
            runner.send(reply)


@pytest.fixture
def runner(tmp_path: Path):
    r = Runner(tmp_path, ALGORITHM)
    assert r.init()["type"] == protocol.READY
    yield r
    r.finish()


def test_reported_metrics_keep_the_last_value_per_name(runner):
    reported = ReportedMetrics()
    result = call_answering(runner, [["loss", 0.5], ["loss", 0.25], ["accuracy", 1]],
                            RequestRouter({protocol.OP_METRIC_LOG: reported}))
    assert result["ok"] and result["output"] == []
    assert reported.values == {"loss": 0.25, "accuracy": 1.0}


def test_bad_names_values_and_too_many_names_are_refused_to_the_algorithm(runner):
    reported = ReportedMetrics(max_names=2)
    payload = [["Bad Name", 1], ["ok", "high"], ["a", 1], ["b", 2], ["c", 3], ["a", 4]]
    result = call_answering(runner, payload, RequestRouter({protocol.OP_METRIC_LOG: reported}))
    refused = result["output"]
    assert len(refused) == 3
    assert "a metric name is" in refused[0]
    assert "a number" in refused[1]
    assert "at most 2 metric names" in refused[2]
    assert reported.values == {"a": 4.0, "b": 2.0}


def test_an_op_without_a_handler_is_refused_not_left_hanging(runner):
    result = call_answering(runner, [["loss", 1]], RequestRouter({}))
    assert result["ok"]
    assert "unknown request 'metric.log'" in result["output"][0]
