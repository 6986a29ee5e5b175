"""Notebook algorithms on the real stack: validated and inspected at publish, called warm in
one kernel per container, their plots and executed notebook kept as the job's artifacts."""

import hashlib
import io
import json

import pytest
from click.testing import CliRunner

from algohost.archive import make_archive
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from tests.stack import EXAMPLES, TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKEN = "nb-s3cret-value"


@pytest.fixture(scope="module")
def regression(stack):
    return publish(stack, EXAMPLES / "notebook_regression")


@pytest.fixture(scope="module")
def probe(stack):
    ref = publish(stack, TEST_ALGORITHMS / "nbprobe")
    response = stack.client.put(f"/v1/algorithms/{stack.owner}/nbprobe/secrets/TOKEN",
                                json={"value": TOKEN}, headers=stack.auth)
    assert response.status_code in (200, 201), response.get_json()
    return ref


def version_path(ref):
    base, version = ref.split("@")
    owner, name = base.split("/")
    return f"/v1/algorithms/{owner}/{name}/versions/{version}"


def test_a_notebook_nbformat_refuses_is_refused_at_publish_naming_its_cell(stack):
    response = stack.client.post(f"/v1/algorithms/{stack.owner}/nbbroken/versions",
                                 data=make_archive(TEST_ALGORITHMS / "nbbroken"),
                                 headers={**stack.auth, "Content-Type": "application/gzip"})
    body = response.get_json()["error"]
    assert response.status_code == 400, body
    assert body["code"] == "invalid_notebook"
    assert body["details"]["cell"] == 2
    assert "'outputs' is a required property" in body["message"]


def test_parameters_are_inspected_at_publish_and_shown_as_a_json_schema(stack, regression):
    build = stack.client.get(version_path(regression), headers=stack.auth).get_json()
    schema = build["parameters"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["properties"]["n"] == {"type": "integer", "default": 200,
                                         "description": "how many points to generate"}
    assert schema["properties"]["noise"]["type"] == ["integer", "number"]
    assert list(schema["properties"]) == ["n", "noise", "seed"]


def test_an_unknown_parameter_is_refused_listing_the_known_ones(stack, regression):
    response = stack.client.post("/v1/jobs", json={"algorithm": regression,
                                                   "input": {"n": 10, "degree": 3}},
                                 headers=stack.auth)
    body = response.get_json()["error"]
    assert response.status_code == 400, body
    assert body["code"] == "unknown_parameter"
    assert body["details"] == {"unknown": ["degree"], "known": ["n", "noise", "seed"]}
    assert "n, noise, seed" in body["message"]


def test_a_parameter_of_the_wrong_type_is_refused(stack, regression):
    response = stack.client.post("/v1/jobs", json={"algorithm": regression,
                                                   "input": {"n": "many"}}, headers=stack.auth)
    body = response.get_json()["error"]
    assert response.status_code == 400 and body["code"] == "invalid_parameter", body
    assert body["details"] == {"parameter": "n", "expected": "integer", "got": "string"}


def test_a_batch_input_with_an_unknown_parameter_is_refused_naming_its_index(stack, regression):
    response = stack.client.post("/v1/batches", json={
        "algorithm": regression, "inputs": [{"n": 10}, {"seed": 1, "colour": "red"}]},
        headers=stack.auth)
    body = response.get_json()["error"]
    assert response.status_code == 400 and body["code"] == "unknown_parameter", body
    assert body["details"]["index"] == 1 and body["message"].startswith("input 1: ")


def test_the_call_injects_parameters_returns_result_and_keeps_its_plot(stack, regression):
    job = call(stack, regression, {"n": 60, "noise": 0.1, "seed": 3})
    assert job["status"] == "succeeded", (job, stack.worker_log())
    assert job["output"]["n"] == 60 and job["output"]["r2"] > 0.99
    assert set(job["output"]) == {"r2", "mse", "slope", "intercept", "n"}
    assert "fit: y = " in job["logs"]
    # algohost_runtime's requests work from a cell: the metrics it logged are the job's.
    assert job["custom_metrics"] == {"r2": job["output"]["r2"], "mse": job["output"]["mse"]}
    by_name = {a["name"]: a for a in job["artifacts"]}
    assert set(by_name) == {"regression.executed.ipynb", "images/cell5-1.png"}
    png = stack.client.get(by_name["images/cell5-1.png"]["url"], headers=stack.auth).data
    assert png.startswith(PNG_SIGNATURE) and by_name["images/cell5-1.png"]["media_type"] == \
        "image/png"
    executed = json.loads(stack.client.get(by_name["regression.executed.ipynb"]["url"],
                                           headers=stack.auth).data)
    tags = [cell["metadata"].get("tags", []) for cell in executed["cells"]]
    injected = tags.index(["injected-parameters"])
    assert tags[injected - 1] == ["parameters"]
    assert "n = 60" in "".join(executed["cells"][injected]["source"])


def test_a_failing_cell_fails_the_job_naming_the_cell(stack, probe):
    job = call(stack, probe, {"fail": True})
    assert (job["status"], job["reason"]) == ("failed", "exception"), job
    error = job["error"]
    assert error["type"] == "IndexError" and error["message"] == "list index out of range"
    assert error["cell"]["index"] == 4 and "numbers[5]" in error["cell"]["source"]
    assert "IndexError" in error["traceback"] and "\x1b[" not in error["traceback"]


def test_a_cell_reads_the_algorithms_secret_from_run_secrets(stack, probe):
    job = call(stack, probe, {"secret": "TOKEN"})
    assert job["status"] == "succeeded", job
    assert job["output"]["secret_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_no_variable_of_one_warm_call_survives_into_the_next(stack, probe):
    first = call(stack, probe, {"x": 5, "label": "first"})
    second = call(stack, probe, {"x": 6})
    assert first["status"] == second["status"] == "succeeded", (first, second)
    assert second["warm"] is True
    assert second["output"] == {"x": 6, "label": "a", "leaked": [], "secret_sha256": None,
                                "text": None}


def test_a_timeout_kills_the_kernel_and_the_next_call_starts_a_new_one(stack, probe):
    call(stack, probe, {})  # a warm container exists
    timed_out = call(stack, probe, {"sleep_s": 120}, timeout_s=3)
    assert (timed_out["status"], timed_out["reason"]) == ("timed_out", "timeout"), timed_out
    after = call(stack, probe, {"label": "after"})
    assert after["status"] == "succeeded" and after["output"]["label"] == "after", after
    assert after["warm"] is False  # the kernel went with its container: a new one started


def test_a_kernel_that_dies_ends_its_container_like_a_crash(stack, probe):
    call(stack, probe, {})  # a warm container exists
    crashed = call(stack, probe, {"crash": True})
    assert (crashed["status"], crashed["reason"]) == ("failed", "crashed"), crashed
    after = call(stack, probe, {"label": "after"})
    assert after["status"] == "succeeded" and after["warm"] is False, after


def test_a_cell_reads_data_through_algohost_runtime(stack, probe):
    owner = stack.owner
    response = stack.client.put(f"/v1/data/{owner}/nbsets", json={"access": "private"},
                                headers=stack.auth)
    assert response.status_code in (200, 201), response.get_json()
    text = "x,y\n1,2\n"
    response = stack.client.put(f"/v1/data/{owner}/nbsets/points.csv",
                                input_stream=io.BytesIO(text.encode()),
                                headers={**stack.auth, "Content-Type": "text/csv",
                                         "Content-Length": str(len(text))})
    assert response.status_code == 201, response.get_json()
    job = call(stack, probe, {"uri": f"data://{owner}/nbsets/points.csv"})
    assert job["status"] == "succeeded", job
    assert job["output"]["text"] == text


def test_the_catalogue_lists_a_notebooks_parameters_with_their_help(stack, regression):
    name = regression.split("@")[0].split("/")[1]
    found = stack.client.get(f"/v1/algorithms?q={name}", headers=stack.auth).get_json()
    entry = next(a for a in found["algorithms"] if a["name"] == name)
    assert entry["parameters"]["n"] == "how many points to generate"
    assert set(entry["parameters"]) == {"n", "noise", "seed"}


def test_describe_prints_the_parameters_and_job_download_saves_the_plot(stack, regression,
                                                                      tmp_path):
    job = call(stack, regression, {"n": 30})
    with stack.serving() as url:
        settings = stack.settings.with_overrides(api_url=url, api_key=stack.key)
        described = CliRunner().invoke(cli, ["describe", regression.split("@")[0]],
                                       obj=CliContext(settings))
        saved = CliRunner().invoke(cli, ["job", job["id"], "--download", str(tmp_path)],
                                   obj=CliContext(settings))
    assert described.exit_code == 0, described.output
    for expected in ("n", "integer", "200", "how many points to generate", "noise", "seed"):
        assert expected in described.stdout
    assert saved.exit_code == 0, saved.output
    assert (tmp_path / "images" / "cell5-1.png").read_bytes().startswith(PNG_SIGNATURE)
    assert f"saved {tmp_path / 'images' / 'cell5-1.png'}" in saved.stderr


def test_a_bare_notebook_publishes_with_a_derived_manifest_and_returns_null(stack):
    notebook = TEST_ALGORITHMS / "nbbare" / "Bare Notes.ipynb"
    with stack.serving() as url:
        settings = stack.settings.with_overrides(api_url=url, api_key=stack.key)
        result = CliRunner().invoke(cli, ["publish", str(notebook), "--quiet"],
                                    obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    assert "has no algorithm.toml: publishing it with this derived one" in result.stderr
    assert 'entrypoint = "bare_notes.ipynb"' in result.stderr
    ref = result.stdout.strip().splitlines()[-1]
    assert ref == f"{stack.owner}/bare_notes@0.1.0"
    job = call(stack, ref, None)
    assert job["status"] == "succeeded" and job["output"] is None, job
    assert "no result here" in job["logs"]
    assert "no variable 'result' and no cell tagged 'result': the output is null" in job["logs"]
