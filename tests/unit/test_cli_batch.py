"""`algohost batch`: submit once, write results in input order, resume without resubmitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from algohost.cli.batch import complete_lines, marker_path
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.config import Settings


class FakeBatches:
    """A batch whose inputs finish a few more each time its status is read."""

    def __init__(self, step: int = 3) -> None:
        self.inputs: list[Any] = []
        self.finished = 0
        self.step = step
        self.submitted = 0

    def submit_batch(self, algorithm: str, jsonl: bytes, **_: Any) -> dict[str, Any]:
        self.submitted += 1
        self.inputs = [json.loads(line) for line in jsonl.splitlines() if line.strip()]
        return self._record()

    def _result(self, index: int) -> dict[str, Any]:
        if index >= self.finished:
            return {"index": index, "status": "pending"}
        value = self.inputs[index]
        if value == "bad":
            return {"index": index, "status": "failed", "error": {"type": "ValueError"}}
        return {"index": index, "status": "succeeded", "output": value}

    def _record(self) -> dict[str, Any]:
        results = [self._result(i) for i in range(len(self.inputs))]
        counts = {s: sum(r["status"] == s for r in results)
                  for s in ("pending", "succeeded", "failed", "timed_out", "canceled")}
        status = "running" if counts["pending"] else "completed"
        return {"id": "b_1", "total": len(self.inputs), "status": status, "counts": counts}

    def batch(self, batch_id: str) -> dict[str, Any]:
        self.finished = min(self.finished + self.step, len(self.inputs))
        return self._record()

    def batch_results(self, batch_id: str, cursor: int, limit: int = 1000) -> dict[str, Any]:
        stop = min(cursor + limit, len(self.inputs))
        return {"results": [self._result(i) for i in range(cursor, stop)],
                "next_cursor": str(stop) if stop < len(self.inputs) else None}


def run(fake: FakeBatches, tmp_path: Path, *args: str) -> Any:
    ctx = CliContext(Settings(api_key="k", state_dir=str(tmp_path / "state")))
    ctx._clients["k"] = fake  # type: ignore[assignment]
    return CliRunner().invoke(cli, ["batch", "alice/hello", *args], obj=ctx)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_results_are_written_in_input_order_and_the_id_is_saved(tmp_path, monkeypatch):
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("\n".join(json.dumps(i) for i in range(10)) + "\n")
    fake = FakeBatches()
    result = run(fake, tmp_path, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [r["output"] for r in lines(out)] == list(range(10))
    assert marker_path(out).read_text().strip() == "b_1"
    assert "b_1" in result.stderr


def test_failed_inputs_are_written_and_the_exit_code_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text('1\n"bad"\n3\n')
    result = run(FakeBatches(), tmp_path, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 1
    assert [r["status"] for r in lines(out)] == ["succeeded", "failed", "succeeded"]
    assert "1 of 3 inputs did not succeed" in result.output


def test_a_rerun_resumes_from_the_saved_id_without_resubmitting(tmp_path, monkeypatch):
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("\n".join(json.dumps(i) for i in range(6)) + "\n")
    fake = FakeBatches()
    fake.submit_batch("alice/hello", inputs.read_bytes())
    marker_path(out).write_text("b_1\n")
    out.write_text('{"index":0,"status":"succeeded","output":0}\n{"index":1,"sta')  # torn
    result = run(fake, tmp_path, "--inputs", str(inputs), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert fake.submitted == 1
    assert [r["index"] for r in lines(out)] == list(range(6))


def test_new_submits_again_even_with_a_saved_id(tmp_path, monkeypatch):
    monkeypatch.setattr("algohost.cli.batch.POLL_S", 0)
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("1\n")
    marker_path(out).write_text("b_old\n")
    fake = FakeBatches()
    result = run(fake, tmp_path, "--inputs", str(inputs), "--out", str(out), "--new")
    assert result.exit_code == 0, result.output
    assert fake.submitted == 1 and lines(out) == [{"index": 0, "status": "succeeded",
                                                   "output": 1}]


def test_complete_lines_drops_a_torn_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("a\nb\nc")
    assert complete_lines(out) == 2
    assert out.read_text() == "a\nb\n"
    assert complete_lines(tmp_path / "missing.jsonl") == 0
