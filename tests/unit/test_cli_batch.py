"""`algohost batch` against the real API: submit once, write results in input order,
resume without resubmitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from algohost.cli.batch import complete_lines, marker_path
from tests.cli_api import CliApi, algorithm_dir


@pytest.fixture
def picky(api: CliApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    body = "if x == 'bad':\n        raise ValueError('bad input')\n    return x"
    return api.publish(algorithm_dir(tmp_path, "picky", body))


def run_once_polled(api: CliApi) -> None:
    """The batch's chunks run only after the command first asks for results."""
    api.worker.hold = True

    def release(request: Any) -> None:
        if request.method == "GET" and "/results" in (request.url or ""):
            api.worker.release()

    api.transport.after = release


def batch(api: CliApi, *args: str) -> Any:
    return api.run(["batch", "alice/picky", *args])


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_results_are_written_in_input_order_and_the_id_is_saved(api, picky, tmp_path):
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("\n".join(json.dumps(i) for i in range(10)) + "\n")
    run_once_polled(api)
    result = batch(api, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [r["output"] for r in lines(out)] == list(range(10))
    [batch_id] = api.worker.batches
    assert marker_path(out).read_text().strip() == batch_id
    assert batch_id in result.stderr


def test_failed_inputs_are_written_and_the_exit_code_says_so(api, picky, tmp_path):
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text('1\n"bad"\n3\n')
    result = batch(api, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 1
    written = lines(out)
    assert [r["status"] for r in written] == ["succeeded", "failed", "succeeded"]
    assert written[1]["error"]["type"] == "ValueError"
    assert "1 of 3 inputs did not succeed" in result.output


def test_a_rerun_resumes_from_the_saved_id_without_resubmitting(api, picky, tmp_path):
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("\n".join(json.dumps(i) for i in range(6)) + "\n")
    first = api.run(["batch", "alice/picky", "--inputs", str(inputs), "--out", str(out)])
    assert first.exit_code == 0, first.output
    out.write_text('{"index":0,"status":"succeeded","output":0}\n{"index":1,"sta')  # torn
    result = batch(api, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(api.worker.batches) == 1
    assert [r["index"] for r in lines(out)] == list(range(6))


def test_new_submits_again_even_with_a_saved_id(api, picky, tmp_path):
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("1\n")
    marker_path(out).write_text("b_old\n")
    result = batch(api, "--inputs", str(inputs), "--out", str(out), "--new")
    assert result.exit_code == 0, result.output
    [written] = lines(out)
    assert len(api.worker.batches) == 1
    assert (written["index"], written["status"], written["output"]) == (0, "succeeded", 1)
    assert not [r for r in api.transport.seen if "b_old" in (r.url or "")]


def test_complete_lines_drops_a_torn_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("a\nb\nc")
    assert complete_lines(out) == 2
    assert out.read_text() == "a\nb\n"
    assert complete_lines(tmp_path / "missing.jsonl") == 0
