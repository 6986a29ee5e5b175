"""Sweeps through the whole stack: each trial a real job in a container, the controller
stepped by the real worker as trials finish, the leaderboard read back from the API."""

import csv
import itertools
import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.dispatch import CeleryDispatcher, make_celery
from algohost.store import connect
from algohost.store.sweeps import SweepStatus, SweepStore, Trial
from tests.stack import EXAMPLES, TEST_ALGORITHMS, publish
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def no_sweep_left_running(stack):
    """The stack outlives this module: a sweep still stepping would feed its worker trials
    while later modules wait for an idle broker."""
    yield
    listed = stack.client.get("/v1/sweeps", headers=stack.auth).get_json()["sweeps"]
    for left in (s for s in listed if s["status"] == "running"):
        stack.client.post(f"/v1/sweeps/{left['id']}/cancel", headers=stack.auth)
    stack.drain(120)


@pytest.fixture(scope="module")
def quadratic(stack):
    return publish(stack, TEST_ALGORITHMS / "quadratic")


def start(stack, **body):
    response = stack.client.post("/v1/sweeps", json=body, headers=stack.auth)
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/v1/sweeps/{response.get_json()['id']}"
    return response.get_json()


def sweep(stack, sweep_id):
    return stack.read(f"/v1/sweeps/{sweep_id}")


def finished(stack, sweep_id, timeout_s=240):
    return stack.until_not_running(f"/v1/sweeps/{sweep_id}", timeout_s)


def by_number(record):
    return sorted(record["trials"], key=lambda trial: trial["number"])


XY = {"x": {"type": "int", "low": 1, "high": 3},
      "y": {"type": "float", "low": -2.0, "high": 0.0, "step": 1.0}}


def test_a_grid_runs_every_point_once_and_ranks_them_by_the_objective(stack, quadratic):
    created = start(stack, algorithm=quadratic, space=XY, strategy="grid",
                    budget={"parallelism": 3}, objective={"key": "score"})
    assert created["trials_budget"] == 9 and created["status"] == "running"
    record = finished(stack, created["id"])
    assert record["status"] == "completed" and record["reason"] == "budget_spent"
    points = sorted((t["params"]["x"], t["params"]["y"]) for t in record["trials"])
    assert points == sorted(itertools.product([1, 2, 3], [-2.0, -1.0, 0.0]))
    assert [t["rank"] for t in record["trials"]] == list(range(1, 10))
    objectives = [t["objective"] for t in record["trials"]]
    assert objectives == sorted(objectives, reverse=True)
    assert record["best"]["params"] == {"x": 3, "y": -1.0} and record["best"]["objective"] == 10
    assert record["counts"] == {"running": 0, "succeeded": 9, "failed": 0, "pending": 0}
    job = stack.get_job(record["best"]["job"])  # each trial is an ordinary job of the owner's
    assert job["status"] == "succeeded" and job["output"]["score"] == 10
    assert job["parent"] == f"sweep:{created['id']}"
    assert record["best"]["duration_ms"] == job["metrics"]["total_ms"]


def test_random_with_a_seed_draws_the_same_trials_again(stack, quadratic):
    body = {"algorithm": quadratic, "strategy": "random", "seed": 7,
            "space": {"x": {"type": "float", "low": -5, "high": 5},
                      "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                      "kind": {"type": "choice", "values": ["a", "b", "c"]}},
            "budget": {"trials": 6, "parallelism": 3}, "objective": {"key": "score"}}
    first = finished(stack, start(stack, **body)["id"])
    second = finished(stack, start(stack, **body)["id"])
    other = finished(stack, start(stack, **{**body, "seed": 8})["id"])
    drawn = [t["params"] for t in by_number(first)]
    assert len(drawn) == 6 and all(1e-4 <= p["lr"] <= 1.0 for p in drawn)
    assert [t["params"] for t in by_number(second)] == drawn
    assert [t["params"] for t in by_number(other)] != drawn


def test_tpe_minimizes_a_nested_key_and_ranks_lowest_first(stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="tpe", seed=3,
                    space={"x": {"type": "float", "low": -5, "high": 8},
                           "y": {"type": "float", "low": -4, "high": 4}},
                    budget={"trials": 14, "parallelism": 2},
                    objective={"key": "metrics.loss", "direction": "minimize"})
    record = finished(stack, created["id"])
    assert record["status"] == "completed" and record["counts"]["succeeded"] == 14
    objectives = [t["objective"] for t in record["trials"]]
    assert objectives == sorted(objectives)
    assert record["best"]["objective"] == min(objectives)
    assert sorted(t["number"] for t in record["trials"]) == list(range(14))


def test_pruning_stops_a_sweep_whose_trials_stop_improving(stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="random", seed=1,
                    space={"x": {"type": "choice", "values": [3]},
                           "y": {"type": "choice", "values": [-1]}},
                    budget={"trials": 50}, objective={"key": "score"},
                    pruning={"patience": 3})
    record = finished(stack, created["id"])
    assert record["status"] == "completed" and record["reason"] == "no_improvement"
    assert len(record["trials"]) == 4  # the best, then three that did not beat it


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on_keeping_artifacts(
        stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="grid", input={"plot": True},
                    space={"mode": {"type": "choice", "values": ["ok", "boom", "silent"]},
                           "x": {"type": "choice", "values": [1, 3]}},
                    budget={"parallelism": 2}, objective={"key": "score"})
    record = finished(stack, created["id"])
    assert record["status"] == "completed" and len(record["trials"]) == 6
    assert record["counts"] == {"running": 0, "succeeded": 2, "failed": 4, "pending": 0}
    failed = {t["params"]["mode"]: t for t in record["trials"] if t["status"] == "failed"}
    assert "boom was asked for" in failed["boom"]["error"]
    assert failed["silent"]["reason"] == "objective_missing"
    assert record["best"]["params"] == {"mode": "ok", "x": 3}
    assert record["trials"][0]["rank"] == 1 and record["trials"][-1]["rank"] is None
    assert [a["name"] for a in record["best"]["artifacts"]] == ["plot.txt"]
    blob = stack.client.get(record["best"]["artifacts"][0]["url"], headers=stack.auth)
    assert blob.status_code == 200 and blob.data == b"x=3.0 y=0.0 score=9.0\n"


@pytest.mark.parametrize("space, strategy, extra, code", [
    ({"x": {"type": "float", "low": 2, "high": 1}}, "random", {},
     "invalid_parameter_range"),
    ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "tpe", {},
     "invalid_parameter_range"),
    ({"x": {"type": "float", "low": 0, "high": 1}}, "grid", {}, "grid_not_enumerable"),
    ({"x": {"type": "int", "low": 0, "high": 100_000}}, "grid", {}, "grid_too_large"),
    ({"x": {"type": "int", "low": 0, "high": 9}}, "random", {"budget": {"trials": 10**6}},
     "too_many_trials"),
    ({"x": {"type": "normal", "low": 0, "high": 9}}, "random", {}, "invalid_request"),
    ({"x": {"type": "int", "low": 0, "high": 9}}, "bayes", {}, "invalid_request"),
    ({}, "random", {}, "invalid_request"),
    ({"x": {"type": "int", "low": 0, "high": 2**60}}, "random", {}, "invalid_request"),
], ids=["empty-range", "log-from-zero", "grid-of-a-float-range", "huge-grid",
        "too-many-trials", "unknown-type", "unknown-strategy", "empty-space",
        "beyond-exact-integers"])
def test_a_bad_spec_is_a_400_naming_its_problem(stack, quadratic, space, strategy, extra,
                                                code):
    response = stack.client.post("/v1/sweeps", headers=stack.auth, json={
        "algorithm": quadratic, "space": space, "strategy": strategy,
        "objective": {"key": "score"}, **extra})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == code


def test_a_sweep_of_an_unknown_algorithm_or_of_another_owner_is_refused(stack):
    body = {"space": {"x": {"type": "int", "low": 0, "high": 3}}, "strategy": "grid",
            "objective": {"key": "score"}}
    missing = stack.client.post("/v1/sweeps", headers=stack.auth,
                                json={**body, "algorithm": f"{stack.owner}/nothing"})
    assert missing.status_code == 404
    theirs = stack.client.post("/v1/sweeps", headers=stack.auth,
                               json={**body, "algorithm": "someone/else"})
    assert theirs.status_code == 403


def test_a_trial_whose_job_was_never_written_is_submitted_by_the_next_step(stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="grid",
                    space={"x": {"type": "choice", "values": [1, 2]}},
                    budget={"parallelism": 1}, objective={"key": "score"})
    finished(stack, created["id"])
    # What a worker killed between taking a trial's number and writing its job leaves:
    # a trial with a job id and no job. Reopen a sweep that way and ask for a step.
    sweeps = SweepStore(connect(stack.settings), stack.settings.job_retention_s)
    sweep_id = "s_" + "0" * 24
    reopened = replace(sweeps.get(created["id"]), id=sweep_id, status=SweepStatus.RUNNING,
                       reason=None, finished_at=None)
    sweeps.create(reopened, 0.0)
    sweeps.add_trial(sweep_id, Trial(number=0, job_id="j_" + "1" * 24, params={"x": 1}))
    CeleryDispatcher(make_celery(stack.settings)).enqueue_sweep(sweep_id)
    record = finished(stack, sweep_id)
    assert record["status"] == "completed" and record["counts"]["succeeded"] == 2
    assert by_number(record)[0]["job"] == "j_" + "1" * 24


def test_cancel_stops_the_trials_in_flight_and_keeps_the_finished(stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="random", seed=2,
                    input={"sleep_s": 30}, space={"x": {"type": "int", "low": 0, "high": 9}},
                    budget={"trials": 10, "parallelism": 2}, objective={"key": "score"})
    eventually(lambda: sweep(stack, created["id"])["counts"]["running"] == 2, 60)
    response = stack.client.post(f"/v1/sweeps/{created['id']}/cancel", headers=stack.auth)
    assert response.status_code == 200, response.get_json()
    record = response.get_json()
    assert record["status"] == "canceled"
    assert [t["reason"] for t in record["trials"]] == ["canceled", "canceled"]
    again = stack.client.post(f"/v1/sweeps/{created['id']}/cancel", headers=stack.auth)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "sweep_not_cancelable"
    listed = stack.client.get("/v1/sweeps", headers=stack.auth).get_json()["sweeps"]
    assert listed[0]["id"] == created["id"] and listed[0]["trials"] == []


def test_a_sweep_carries_on_after_its_worker_is_killed(stack, quadratic):
    created = start(stack, algorithm=quadratic, strategy="tpe", seed=5,
                    input={"sleep_s": 1},
                    space={"x": {"type": "float", "low": -5, "high": 8}},
                    budget={"trials": 8, "parallelism": 2}, objective={"key": "score"})
    eventually(lambda: sweep(stack, created["id"])["counts"]["succeeded"] >= 2, 120)
    stack.kill_worker()
    stack.start_worker()
    record = finished(stack, created["id"], timeout_s=300)
    assert record["status"] == "completed", record
    trials = by_number(record)
    assert [t["number"] for t in trials] == list(range(8))
    assert len({t["job"] for t in trials}) == 8
    assert all(t["status"] == "succeeded" for t in trials), trials


def run_cli(stack, url, *args):
    settings = stack.settings.with_overrides(api_url=url, api_key=stack.key)
    result = CliRunner().invoke(cli, list(args), obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_command_line_follows_a_sweep_and_writes_its_leaderboard_as_csv(
        stack, quadratic, tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'algorithm = "{quadratic}"\nstrategy = "grid"\n'
                    '[space.x]\ntype = "int"\nlow = 2\nhigh = 4\n'
                    '[budget]\nparallelism = 2\n[objective]\nkey = "score"\n')
    table = tmp_path / "leaderboard.csv"
    with stack.serving() as url:
        shown = run_cli(stack, url, "sweep", "start", str(spec), "--out", str(table))
        listed = run_cli(stack, url, "sweep", "list", "--json")
    assert "best: 9 with x=3" in shown and "completed" in shown
    rows = list(csv.DictReader(table.open()))
    assert [(row["rank"], row["x"], row["score"]) for row in rows] == \
        [("1", "3", "9.0"), ("2", "2", "8.0"), ("3", "4", "8.0")]
    assert all(row["job"].startswith("j_") and float(row["duration_ms"]) > 0 for row in rows)
    assert json.loads(listed)[0]["status"] == "completed"


def test_a_sweep_over_a_notebooks_parameters_keeps_each_trials_plot(stack):
    regression = publish(stack, EXAMPLES / "notebook_regression")
    created = start(stack, algorithm=regression, strategy="tpe", seed=11,
                    space={"noise": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
                           "n": {"type": "int", "low": 20, "high": 200, "step": 20}},
                    budget={"trials": 6, "parallelism": 2},
                    objective={"key": "r2", "direction": "maximize"})
    record = finished(stack, created["id"], timeout_s=600)
    assert record["status"] == "completed" and record["counts"]["succeeded"] == 6, record
    objectives = [t["objective"] for t in record["trials"]]
    assert objectives == sorted(objectives, reverse=True) and 0 < objectives[0] <= 1
    for trial in record["trials"]:
        names = [a["name"] for a in trial["artifacts"]]
        plots = [a for a in trial["artifacts"] if a["name"].endswith(".png")]
        assert len(plots) == 1 and "regression.executed.ipynb" in names, names
        png = stack.client.get(plots[0]["url"], headers=stack.auth)
        assert png.status_code == 200 and png.data.startswith(b"\x89PNG\r\n\x1a\n")
