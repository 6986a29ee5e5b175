"""The catalogue commands against the real API: describe a range, yank, share, search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algohost.store.keys import KeyStore
from tests.cli_api import CliApi, algorithm_dir


@pytest.fixture
def two_majors(api: CliApi, tmp_path: Path) -> None:
    api.publish(algorithm_dir(tmp_path / "a", "greet", "return 'hello ' + x"))
    directory = algorithm_dir(tmp_path / "b", "greet", "return 'hi ' + x")
    with open(directory / "algorithm.toml", "a") as manifest:
        manifest.write('description = "Greets politely"\n[parameters]\nx = "a name"\n')
    result = api.run(["publish", "--bump", "major", str(directory)])
    assert result.exit_code == 0, result.output


def test_a_range_call_runs_the_newest_version_inside_it(api: CliApi, two_majors: None) -> None:
    assert json.loads(api.run(["call", "alice/greet@0", '"Ada"']).stdout) == "hello Ada"
    assert json.loads(api.run(["call", "alice/greet@1", '"Ada"']).stdout) == "hi Ada"


def test_describe_names_the_version_a_reference_resolves_to(api: CliApi,
                                                            two_majors: None) -> None:
    result = api.run(["describe", "alice/greet@0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "alice/greet@0.1.0 succeeded"


def test_yank_hides_a_version_from_latest_until_undone(api: CliApi, two_majors: None) -> None:
    assert api.run(["yank", "alice/greet@1.0.0"]).stdout.strip() == "alice/greet@1.0.0 yanked"
    assert api.run(["describe", "alice/greet"]).stdout.strip() == "alice/greet@0.1.0 succeeded"
    assert api.run(["yank", "--undo", "alice/greet@1.0.0"]).exit_code == 0
    assert api.run(["describe", "alice/greet"]).stdout.startswith("alice/greet@1.0.0")


@pytest.mark.parametrize("ref", ["alice/greet", "alice/greet@1", "alice/greet@latest"])
def test_yank_takes_only_an_exact_version(api: CliApi, ref: str) -> None:
    result = api.run(["yank", ref])
    assert result.exit_code == 2 and "exact version" in result.output
    assert api.transport.seen == []


def test_a_shared_algorithm_is_found_and_called_by_another_owner(api: CliApi, redis_client,
                                                                  two_majors: None) -> None:
    bob = KeyStore(redis_client).create("bob")
    refused = api.run(["call", "alice/greet@1", '"Bob"'], key=bob)
    assert refused.exit_code == 1 and "algorithm_not_found" in refused.output
    assert api.run(["visibility", "alice/greet", "public"]).stdout.strip() == \
        "alice/greet public"
    found = json.loads(api.run(["search", "POLITE", "--json"], key=bob).stdout)
    assert [(f["owner"], f["name"], f["latest"], f["parameters"]) for f in found] == [
        ("alice", "greet", "1.0.0", {"x": "a name"})]
    assert json.loads(api.run(["call", "alice/greet@1", '"Bob"'], key=bob).stdout) == "hi Bob"
    assert json.loads(api.run(["search", "nothing-like-it", "--json"], key=bob).stdout) == []
