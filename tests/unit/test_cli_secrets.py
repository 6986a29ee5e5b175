"""`algohost secrets` against the real API: where the value comes from, what is printed."""

import json

import pytest

from tests.cli_api import algorithm_dir


@pytest.fixture
def hello(api, tmp_path):
    return api.publish(algorithm_dir(tmp_path, "hello", "return x"))


PATH = "/v1/algorithms/alice/hello/secrets"


def test_set_reads_the_value_from_stdin_and_never_prints_it(api, hello):
    api.run(["secrets", "set", "alice/hello", "DB_PASSWORD"], stdin="hunter1\n")
    result = api.run(["secrets", "set", "alice/hello", "DB_PASSWORD"], stdin="hunter2\n")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests_to("PUT", f"{PATH}/DB_PASSWORD")[-1].body) == {
        "value": "hunter2"}
    assert "hunter2" not in result.output
    assert "version 2" in result.output
    assert api.secrets.read("alice", "hello", ["DB_PASSWORD"])[0] == {"DB_PASSWORD": "hunter2"}


def test_set_takes_no_value_argument(api, hello):
    result = api.run(["secrets", "set", "alice/hello", "DB_PASSWORD", "hunter2"])
    assert result.exit_code == 2
    assert not api.transport.seen


def test_an_empty_value_is_refused_before_any_request(api, hello):
    result = api.run(["secrets", "set", "alice/hello", "X"], stdin="")
    assert result.exit_code == 2 and not api.transport.seen


def test_list_prints_names_and_versions_and_json_with_the_flag(api, hello):
    api.secrets.put("alice", "hello", "DB_PASSWORD", "one")
    meta = api.secrets.put("alice", "hello", "DB_PASSWORD", "two")
    human = api.run(["secrets", "list", "alice/hello"])
    assert "DB_PASSWORD" in human.output and "2" in human.output
    assert "two" not in human.output
    machine = api.run(["secrets", "list", "alice/hello", "--json"])
    assert json.loads(machine.stdout) == [meta]


def test_delete_of_a_missing_secret_exits_1_with_the_api_code(api, hello):
    result = api.run(["secrets", "delete", "alice/hello", "GONE"])
    assert result.exit_code == 1
    assert "secret_not_found" in result.output


def test_secrets_of_an_algorithm_that_does_not_exist_are_the_apis_404(api):
    result = api.run(["secrets", "list", "alice/nothing"])
    assert result.exit_code == 1 and "algorithm_not_found" in result.output


def test_a_versioned_reference_is_a_usage_error(api):
    assert api.run(["secrets", "list", "alice/hello@1.0.0"]).exit_code == 2
    assert not api.transport.seen
