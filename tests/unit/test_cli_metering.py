"""`algohost compare`, `algohost usage` and the compute budget, through the real API on a
real Redis, with jobs run by the in-process worker and its metering hooks."""

from __future__ import annotations

import json
from pathlib import Path

from algohost.cli.metering import ROWS, cell
from algohost.store import connect
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.metrics import BuildMetrics
from tests.cli_api import CliApi, algorithm_dir


def two_versions(api: CliApi, tmp_path: Path) -> tuple[str, str]:
    first = api.publish(algorithm_dir(tmp_path / "a", "greet", "return 'hi ' + x"))
    second = api.publish(algorithm_dir(tmp_path / "b", "greet", "return 'hello ' + x"))
    return first, second


def call(api: CliApi, ref: str, payload: str = "ada") -> None:
    result = api.run(["call", ref, json.dumps(payload)])
    assert result.exit_code == 0, result.output


def test_compare_shows_each_versions_calls_and_latencies(api: CliApi, tmp_path: Path) -> None:
    first, second = two_versions(api, tmp_path)
    for _ in range(3):
        call(api, first)
    call(api, second)
    v1, v2 = first.split("@")[1], second.split("@")[1]
    result = api.run(["compare", "alice/greet", v1, v2, "--json"])
    assert result.exit_code == 0, result.output
    builds = json.loads(result.stdout)["builds"]
    assert [(b["version"], b["calls"], b["succeeded"]) for b in builds] == [(v1, 3, 3),
                                                                           (v2, 1, 1)]
    assert all(b["run_ms"]["p50"] > 0 and b["peak_memory_bytes"]["max"] > 0 for b in builds)
    table = api.run(["compare", "alice/greet", v1, v2])
    assert table.exit_code == 0, table.output
    assert v1 in table.stdout and v2 in table.stdout and "run_ms p99" in table.stdout


def test_compare_highlights_a_slower_build_red_and_a_faster_one_green() -> None:
    p50 = next(row for row in ROWS if row.label == "run_ms p50")
    assert cell(100.0, 180.0, p50, 0.1).style == "bold red"
    assert cell(100.0, 50.0, p50, 0.1).style == "bold green"
    assert cell(100.0, 105.0, p50, 0.1).style == ""
    assert "(+80%)" in cell(100.0, 180.0, p50, 0.1).plain


def test_compare_reads_reported_metrics_and_refuses_a_bad_version(api: CliApi,
                                                                 tmp_path: Path) -> None:
    first, _ = two_versions(api, tmp_path)
    build_id = api.worker.registry.find("alice", "greet", first.split("@")[1]).id
    metrics = BuildMetrics.from_settings(connect(api.settings), api.settings)
    metrics.record(JobRecord(id="j_x", owner="alice", status=JobStatus.SUCCEEDED,
                             build_id=build_id, finished_at="2026-03-01T10:00:00.000Z",
                             metrics={"run_ms": 5.0, "total_ms": 6.0},
                             custom_metrics={"accuracy": 0.75}))
    result = api.run(["compare", "alice/greet"])
    assert result.exit_code == 0, result.output
    assert "accuracy (mean)" in result.stdout and "0.75" in result.stdout
    refused = api.run(["compare", "alice/greet", "1.x"])
    assert refused.exit_code == 2 and "MAJOR.MINOR.PATCH" in refused.output


def test_usage_sums_the_callers_calls_by_day_and_algorithm(api: CliApi, tmp_path: Path) -> None:
    first, second = two_versions(api, tmp_path)
    for ref in (first, first, second):
        call(api, ref)
    result = api.run(["usage", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(line["algorithm"], line["calls"]) for line in report["lines"]] == [
        ("alice/greet", 3)]
    by_version = json.loads(api.run(["usage", "--group-by", "version", "--json"]).stdout)
    assert [(line["version"], line["calls"]) for line in by_version["lines"]] == [
        (first.split("@")[1], 2), (second.split("@")[1], 1)]
    assert by_version["total"]["compute_us"] == report["total"]["compute_us"] > 0
    table = api.run(["usage"])
    assert table.exit_code == 0 and "alice/greet" in table.stdout and "total" in table.stdout


def test_a_spent_budget_refuses_calls_with_402_until_the_day_turns(api: CliApi,
                                                                    tmp_path: Path) -> None:
    # Set before the API first reads alice's limits (it keeps them for a few seconds).
    assert api.run(["limits", "set", "alice", "--compute-s-per-day", "0.000001"]).exit_code == 0
    first, _ = two_versions(api, tmp_path)
    call(api, first)  # nothing spent yet: accepted, and it spends the budget
    refused = api.run(["call", first, '"ada"'])
    assert refused.exit_code != 0
    assert "budget_exhausted" in refused.output and "compute-seconds" in refused.output
    shown = json.loads(api.run(["limits", "--json"]).stdout)
    assert shown["limits"]["compute_s_per_day"] == 0.000001
    assert shown["usage"]["compute_s_today"] > 0


def test_a_batchs_inputs_show_as_calls_in_usage_and_compare(api: CliApi, tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    first, _ = two_versions(api, tmp_path)
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("\n".join(json.dumps(f"n{i}") for i in range(7)) + "\n")
    result = api.run(["batch", first, "--inputs", str(inputs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ran = [json.loads(line)["metrics"]["run_ms"] for line in out.read_text().splitlines()]
    report = json.loads(api.run(["usage", "--group-by", "version", "--json"]).stdout)
    assert [(line["version"], line["calls"]) for line in report["lines"]] == [
        (first.split("@")[1], 7)]
    assert report["total"]["compute_us"] == sum(round(ms * 1000) for ms in ran)
    compared = json.loads(api.run(["compare", "alice/greet", "--json"]).stdout)["builds"]
    assert {b["version"]: b["calls"] for b in compared}[first.split("@")[1]] == 7
