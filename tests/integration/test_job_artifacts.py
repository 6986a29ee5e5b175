"""Files a call leaves under /outputs become the job's artifacts, on the real stack."""

import hashlib
import json

import pytest
from click.testing import CliRunner

from algohost.artifacts.lineage import input_digest
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from tests.stack import TEST_ALGORITHMS, call, publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def outputs(stack):
    return publish(stack, TEST_ALGORITHMS / "outputs")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_files_under_outputs_become_artifacts_streamed_back_to_their_owner(stack, outputs):
    files = {"plot.svg": "<svg/>", "tables/result.csv": "a,b\n1,2\n"}
    job = call(stack, outputs, {"files": files})
    assert job["status"] == "succeeded", job
    by_name = {a["name"]: a for a in job["artifacts"]}
    assert set(by_name) == set(files)
    csv = by_name["tables/result.csv"]
    assert (csv["sha256"], csv["size"], csv["media_type"]) == (
        sha(files["tables/result.csv"]), len(files["tables/result.csv"]), "text/csv")
    assert by_name["plot.svg"]["media_type"] == "image/svg+xml"
    download = stack.client.get(csv["url"], headers=stack.auth)
    assert download.status_code == 200 and download.data == files["tables/result.csv"].encode()
    other = stack.client.get(csv["url"], headers={"Authorization": f"Bearer {stack.other_key}"})
    assert other.status_code == 404


def test_outputs_is_empty_at_the_start_of_every_warm_call(stack, outputs):
    first = call(stack, outputs, {"files": {"left-over.txt": "from the first call"}})
    second = call(stack, outputs, {})
    assert first["status"] == second["status"] == "succeeded"
    assert second["warm"] is True
    assert second["output"] == {"before": []} and second["artifacts"] == []


def test_the_lineage_query_finds_the_artifacts_of_one_algorithm_on_one_input(stack, outputs):
    payload = {"files": {"report.txt": "params P on data D"}}
    job = call(stack, outputs, payload)
    assert job["status"] == "succeeded" and len(job["artifacts"]) == 1, (job,
                                                                         stack.worker_log())
    call(stack, outputs, {"files": {"report.txt": "another input"}})
    name = outputs.split("@")[0]
    query = f"/v1/artifacts?algorithm={name}&input_sha256={input_digest(payload)}"
    found = stack.client.get(query, headers=stack.auth).get_json()["artifacts"]
    assert [(a["name"], a["lineage"]["job"]) for a in found] == [("report.txt", job["id"])]
    assert found[0]["lineage"]["algorithm"] == outputs
    assert found[0]["lineage"]["build_id"] == stack.build_of(outputs)["id"]
    other = stack.client.get(query, headers={"Authorization": f"Bearer {stack.other_key}"})
    assert other.get_json()["artifacts"] == []


def test_too_many_files_fail_the_call_with_artifacts_too_large(stack, outputs):
    job = call(stack, outputs, {"many": stack.settings.sandbox.max_artifacts + 1})
    assert (job["status"], job["reason"]) == ("failed", "artifacts_too_large")
    assert job["error"]["type"] == "ArtifactsTooLarge" and job["artifacts"] == []
    assert call(stack, outputs, {})["status"] == "succeeded"


def test_the_command_line_downloads_a_jobs_artifacts(stack, outputs, tmp_path):
    job = call(stack, outputs, {"files": {"out/model-card.md": "# card"}})
    with stack.serving() as url:
        settings = stack.settings.with_overrides(api_url=url, api_key=stack.key)
        result = CliRunner().invoke(cli, ["job", job["id"], "--download", str(tmp_path),
                                          "--json"], obj=CliContext(settings))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["id"] == job["id"]
    assert (tmp_path / "out" / "model-card.md").read_text() == "# card"
