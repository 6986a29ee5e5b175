"""`algohost pipeline` against the real API, its steps run by the in-process worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_api import CliApi, algorithm_dir

SPEC = """
[steps.double]
algorithm = "double"
input = "$input.n"

[steps.left]
algorithm = "double"
input = "$steps.double.output"

[steps.right]
algorithm = "checked"
input = "$steps.double.output"

[steps.total]
algorithm = "add"
input = ["$steps.left.output", "$steps.right.output"]
"""


@pytest.fixture
def spec_file(api: CliApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("algohost.cli.pipeline.POLL_S", 0)
    api.publish(algorithm_dir(tmp_path, "double", "return x * 2"))
    api.publish(algorithm_dir(tmp_path, "add", "return sum(x)"))
    api.publish(algorithm_dir(tmp_path, "checked",
                              "if x > 100:\n        raise ValueError('too big')\n    return x"))
    path = tmp_path / "numbers.toml"
    path.write_text(SPEC)
    return path


def test_publish_then_run_shows_the_graph_and_the_output(api, spec_file):
    published = api.run(["pipeline", "publish", str(spec_file), "numbers"])
    assert published.exit_code == 0, published.output
    assert "version 1" in published.stdout
    assert "double -> left | right -> total" in published.stdout
    result = api.run(["pipeline", "run", "numbers", "--input", '{"n": 3}', "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded"
    assert run["output"] == {"total": 18}  # 3*2*2 + 3*2
    assert [step["name"] for step in run["steps"]] == ["double", "left", "right", "total"]
    shown = api.run(["pipeline", "status", run["id"]])
    assert shown.exit_code == 0
    for name in ("double", "left", "right", "total", "succeeded"):
        assert name in shown.stdout


def test_runs_lists_the_newest_first_with_their_progress(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    first = json.loads(api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}',
                                "--json"]).stdout)
    second = json.loads(api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}',
                                 "--json"]).stdout)
    listing = json.loads(api.run(["pipeline", "runs", "numbers", "--json"]).stdout)
    assert [run["id"] for run in listing["runs"]] == [second["id"], first["id"]]
    assert listing["runs"][0]["cached_steps"] == 4 == listing["runs"][0]["finished_steps"]
    table = api.run(["pipeline", "runs"])
    assert table.exit_code == 0 and first["id"] in table.stdout


def test_list_shows_each_pipeline_at_its_latest_version(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    api.run(["pipeline", "publish", str(spec_file), "again"])
    listing = json.loads(api.run(["pipeline", "list", "--json"]).stdout)
    assert [(p["name"], p["version"]) for p in listing["pipelines"]] == [
        ("again", 1), ("numbers", 1)]
    table = api.run(["pipeline", "list"])
    assert "alice/numbers" in table.stdout and "double -> left | right -> total" in table.stdout


def test_publishing_the_same_spec_again_says_it_is_unchanged(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    again = api.run(["pipeline", "publish", str(spec_file), "alice/numbers"])
    assert again.exit_code == 0 and "unchanged, still" in again.stdout


def test_a_failed_step_fails_the_command_and_names_the_step(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    result = api.run(["pipeline", "run", "numbers", "--input", '{"n": 60}'])
    assert result.exit_code == 1
    assert "failed at step 'right'" in result.output
    assert "too big" in result.stdout
    assert "upstream_failed" not in result.stdout or "skipped" in result.stdout


def test_a_rerun_reuses_every_step(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    first = json.loads(api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}',
                                "--json"]).stdout)
    again = json.loads(api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}',
                                "--json"]).stdout)
    assert all(step["cached"] for step in again["steps"])
    assert again["output"] == first["output"]
    fresh = json.loads(api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}',
                                "--no-cache", "--json"]).stdout)
    assert not any(step["cached"] for step in fresh["steps"])


def test_a_spec_with_an_unknown_step_is_refused_before_any_request(api, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"steps": {"a": {"algorithm": "x", "input": "$steps.b.output"}}}))
    result = api.run(["pipeline", "publish", str(path), "bad"])
    assert result.exit_code != 0
    assert "unknown steps" in result.output and "'b'" in result.output
    assert not api.transport.seen


def test_steps_past_the_owners_compute_budget_fail_and_say_so(api, spec_file):
    assert api.run(["limits", "set", "alice", "--compute-s-per-day", "0.000001"]).exit_code == 0
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    result = api.run(["pipeline", "run", "numbers", "--input", '{"n": 2}', "--json"])
    assert result.exit_code == 1
    run = json.loads(result.stdout)
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["double"]["status"] == "succeeded"  # nothing was spent when it started
    assert steps["left"]["reason"] == steps["right"]["reason"] == "budget_exhausted"
    assert steps["total"]["reason"] == "upstream_failed"
    refused = api.run(["pipeline", "run", "numbers", "--input", '{"n": 5}'])
    assert refused.exit_code != 0 and "budget_exhausted" in refused.output


def test_cancel_stops_a_run_whose_steps_wait_for_a_worker(api, spec_file):
    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    api.worker.hold = True  # the first step's job waits in the queue
    started = api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}', "--detach"])
    run_id = started.stdout.strip()
    canceled = api.run(["pipeline", "cancel", run_id, "--json"])
    assert canceled.exit_code == 0, canceled.output
    assert json.loads(canceled.stdout)["status"] == "canceled"
    api.worker.release()
    shown = json.loads(api.run(["pipeline", "status", run_id, "--json"]).stdout)
    assert {step["status"] for step in shown["steps"]} <= {"canceled", "skipped"}
    assert api.run(["pipeline", "cancel", run_id]).exit_code != 0


def test_ctrl_c_stops_following_and_says_how_to_follow_again(api, spec_file, monkeypatch):
    from algohost.cli.client import ApiClient

    api.run(["pipeline", "publish", str(spec_file), "numbers"])
    api.worker.hold = True  # the run stays running while the command follows it

    def interrupted(self, run_id):
        raise KeyboardInterrupt

    monkeypatch.setattr(ApiClient, "pipeline_run", interrupted)
    result = api.run(["pipeline", "run", "numbers", "--input", '{"n": 1}'])
    assert result.exit_code == 130
    assert "the run goes on" in result.output and "pipeline status pr_" in result.output
