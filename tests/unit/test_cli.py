"""The `algohost` command line against the real API (tests/cli_api.py): the Flask app on a
real Redis, a worker running in-process on the stub sandbox. No server, broker or Docker.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import requests

from algohost.cli.client import ApiClient, ApiError, ApiUnreachable
from algohost.cli.common import PollTimeout, wait_until
from algohost.dev import stack
from tests.cli_api import API_URL, CliApi, algorithm_dir


@pytest.fixture
def echo(api: CliApi, tmp_path: Path) -> str:
    return api.publish(algorithm_dir(tmp_path, "echo", "return x"))


@pytest.fixture
def greet(api: CliApi, tmp_path: Path) -> str:
    body = "return {'greeting': 'hello ' + x['name']}"
    return api.publish(algorithm_dir(tmp_path, "greet", body))


def body_of(request: requests.PreparedRequest) -> Any:
    return json.loads(request.body or b"")


def post_id(api: CliApi) -> str:
    return str(api.app.test_client().get("/v1/jobs", headers={
        "Authorization": f"Bearer {api.key}"}).get_json()["jobs"][0]["id"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- input parsing ---------------------------------------------------------------------


def test_call_sends_the_json_argument_and_prints_the_output(api: CliApi, greet: str) -> None:
    result = api.run(["call", "alice/greet", '{"name": "world"}'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hello world"}
    [request] = api.requests_to("POST", "/v1/jobs")
    assert body_of(request) == {"algorithm": "alice/greet", "input": {"name": "world"}}
    assert request.headers["Authorization"] == f"Bearer {api.key}"
    assert request.headers["Prefer"] == "wait=60"


def test_dash_reads_the_input_from_stdin(api: CliApi, echo: str) -> None:
    result = api.run(["call", "alice/echo", "-"], stdin="[1, 2, 3]")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [1, 2, 3]


def test_at_file_reads_the_input_from_a_file(api: CliApi, echo: str, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"x": null}')
    result = api.run(["call", "alice/echo", f"@{tmp_path / 'in.json'}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"x": None}


@pytest.mark.parametrize("given", ["{not json", "@/nonexistent/in.json"])
def test_unusable_input_is_a_usage_error_not_a_traceback(given: str, api: CliApi) -> None:
    result = api.run(["call", "alice/hello", given])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "not valid JSON" in result.output or "cannot read" in result.output
    assert api.transport.seen == []


@pytest.mark.parametrize("args", [["call", "hello", "1"], ["versions", "alice/hello@1.0.0"],
                                  ["call", "alice/", "1"], ["publish", "/nonexistent/dir"],
                                  ["call", "alice/hello\n", "1"],
                                  ["call", "alice/hello@1.2.x", "1"],
                                  ["delete", "alice/hello@latest"], ["delete", "alice/hello"],
                                  ["secrets", "list", "alice/hello\x1b"]])
def test_malformed_arguments_exit_2(args: list[str], api: CliApi) -> None:
    result = api.run(args)
    assert result.exit_code == 2, result.output
    assert api.transport.seen == []


# -- errors from the API ---------------------------------------------------------------


def test_api_error_body_becomes_a_click_error_with_its_code(api: CliApi) -> None:
    result = api.run(["job", "j_nope"])
    assert result.exit_code == 1
    assert "job_not_found" in result.stderr and "HTTP 404" in result.stderr
    http = requests.Session()
    http.mount(API_URL, api.transport)
    with pytest.raises(ApiError) as caught:
        ApiClient(API_URL, api.key, http=http).job("j_nope")
    assert (caught.value.code, caught.value.status) == ("job_not_found", 404)
    assert isinstance(caught.value, click.ClickException)


class BadGateway(requests.adapters.BaseAdapter):
    """What a proxy in front of the API answers when the API is down: not our JSON."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response.reason = 502, "Bad Gateway"
        response._content, response.request = b"<html>bad gateway</html>", request
        return response

    def close(self) -> None:
        pass


def test_a_foreign_error_page_is_still_reported() -> None:
    http = requests.Session()
    http.mount(API_URL, BadGateway())
    with pytest.raises(ApiError) as caught:
        ApiClient(API_URL, "k", http=http).jobs()
    assert caught.value.code == "http_502"
    assert "bad gateway" in caught.value.detail


def test_connection_refused_points_at_dev_up(api: CliApi) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = api.run(["jobs"], url=url)
    assert result.exit_code == 1
    assert f"cannot reach the algohost API at {url}; is `algohost dev up` running?" in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(ApiUnreachable):
        ApiClient(url, "k").whoami()


def test_missing_api_key_is_explained_before_any_request(api: CliApi) -> None:
    result = api.run(["jobs"], key="")
    assert result.exit_code == 1
    assert "ALGOHOST_API_KEY" in result.stderr
    assert api.transport.seen == []


def test_an_unknown_api_key_is_the_apis_401(api: CliApi) -> None:
    result = api.run(["jobs"], key="ak_nope")
    assert result.exit_code == 1 and "HTTP 401" in result.stderr


# -- jobs ------------------------------------------------------------------------------


def test_call_polls_a_job_that_outlives_the_wait(api: CliApi, echo: str) -> None:
    api.worker.hold = True  # the job runs only once the CLI has polled it

    def run_after_the_first_poll(request: requests.PreparedRequest) -> None:
        if request.method == "GET" and (request.url or "").startswith(f"{API_URL}/v1/jobs/"):
            api.worker.release()

    api.transport.after = run_after_the_first_poll
    result = api.run(["call", "alice/echo", '"done"', "--wait", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == "done"
    [post] = api.requests_to("POST", "/v1/jobs")
    assert "Prefer" not in post.headers
    polls = [r for r in api.transport.seen if r.method == "GET"]
    assert len(polls) >= 2 and {r.url for r in polls} == {f"{API_URL}/v1/jobs/{post_id(api)}"}


def test_failed_call_prints_the_error_to_stderr_and_exits_1(api: CliApi, tmp_path: Path) -> None:
    api.publish(algorithm_dir(tmp_path, "failing", "raise ValueError('x must be even')"))
    result = api.run(["call", "alice/failing", '{"x": 1}', "--metrics"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ValueError: x must be even" in result.stderr
    assert "run_ms" in result.stderr


def test_json_flag_prints_the_whole_job_record_as_the_api_returns_it(
        api: CliApi, echo: str) -> None:
    result = api.run(["call", "alice/echo@0.1.0", "42", "--json", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["output"] == 42 and printed["status"] == "succeeded"
    assert body_of(api.requests_to("POST", "/v1/jobs")[0])["timeout_s"] == 5
    shown = api.run(["job", printed["id"], "--json"])
    assert json.loads(shown.stdout) == printed


def test_submit_prints_only_the_job_id(api: CliApi, echo: str) -> None:
    result = api.run(["submit", "alice/echo", "{}"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"j_\w+\n", result.stdout)
    assert json.loads(api.run(["job", result.stdout.strip(), "--json"]).stdout)["id"] == \
        result.stdout.strip()


def test_a_submit_whose_reply_was_lost_is_retried_under_the_same_key(
        api: CliApi, echo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("algohost.cli.client.SUBMIT_RETRY_DELAYS_S", (0.0, 0.0))
    lost: list[str] = []

    def lose_the_first_reply(request: requests.PreparedRequest) -> None:
        if request.method == "POST" and not lost:
            lost.append(request.headers["Idempotency-Key"])
            raise requests.ConnectionError("the connection closed before the reply")

    api.transport.after = lose_the_first_reply
    result = api.run(["submit", "alice/echo", "{}"])
    assert result.exit_code == 0, result.output
    first, second = api.requests_to("POST", "/v1/jobs")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == lost[0]
    listed = api.app.test_client().get("/v1/jobs", headers={
        "Authorization": f"Bearer {api.key}"}).get_json()["jobs"]
    assert [job["id"] for job in listed] == [result.stdout.strip()]


def test_each_submit_has_its_own_key(api: CliApi, echo: str) -> None:
    for _ in range(2):
        assert api.run(["submit", "alice/echo", "{}"]).exit_code == 0
    first, second = api.requests_to("POST", "/v1/jobs")
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]


def test_jobs_passes_the_limit(api: CliApi, echo: str) -> None:
    job_id = api.run(["submit", "alice/echo", "1"]).stdout.strip()
    result = api.run(["jobs", "--limit", "5"])
    assert result.exit_code == 0, result.output
    [listing] = api.requests_to("GET", "/v1/jobs")
    assert listing.url.endswith("?limit=5")
    assert job_id in result.stdout


# -- publish ---------------------------------------------------------------------------


def test_publish_uploads_a_clean_archive_and_prints_the_ref(api: CliApi, tmp_path: Path) -> None:
    directory = algorithm_dir(tmp_path, "hello", "return x")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    assert api.publish(directory) == "alice/hello@0.1.0"
    with open(directory / "main.py", "a") as main:
        main.write("# changed: a new version\n")
    result = api.run(["publish", str(directory), "--bump", "minor"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "alice/hello@0.2.0\n"
    upload = api.requests_to("POST", "/v1/algorithms/alice/hello/versions")[-1]
    assert upload.headers["Content-Type"] == "application/gzip"
    assert upload.url.endswith("?bump=minor")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(upload.body))) as tar:
        assert sorted(tar.getnames()) == ["algorithm.toml", "main.py"]


def test_a_quiet_failed_build_shows_the_last_60_log_lines(api: CliApi, tmp_path: Path) -> None:
    api.worker.builder.fail_with = [f"step {n}" for n in range(100)]
    result = api.run(["publish", "--quiet", str(algorithm_dir(tmp_path, "hello", "return x"))])
    assert result.exit_code == 1
    # The log ends with the 100 steps, a blank line and the worker's "build failed".
    assert "step 99" in result.stderr and "step 42" in result.stderr
    assert "step 41\n" not in result.stderr and "build failed" in result.stderr


def test_publish_prints_the_build_log_from_its_stream_and_quiet_does_not(
        api: CliApi, tmp_path: Path) -> None:
    api.worker.builder.fail_with = [f"step {n}" for n in range(100)]
    failed = api.run(["publish", str(algorithm_dir(tmp_path, "hello", "return x"))])
    assert failed.exit_code == 1
    assert "step 0\n" in failed.stderr and "step 99\n" in failed.stderr
    assert failed.stderr.count("step 99\n") == 1  # not shown again after the stream
    assert api.requests_to("GET", "/v1/algorithms/alice/hello/versions/0.1.0/logs")

    api.worker.builder.fail_with = None
    quiet = api.run(["publish", "--quiet", str(algorithm_dir(tmp_path, "other", "return x"))])
    assert quiet.exit_code == 0, quiet.output
    assert "loaded main.py" not in quiet.stderr
    assert not api.requests_to("GET", "/v1/algorithms/alice/other/versions/0.1.0/logs")


def test_publish_rejects_a_directory_without_manifest(api: CliApi, tmp_path: Path) -> None:
    result = api.run(["publish", str(tmp_path)])
    assert result.exit_code == 1
    assert "algorithm.toml" in result.stderr
    assert api.transport.seen == []


# -- polling, processes, pruning --------------------------------------------------------


def test_wait_until_gives_up_after_the_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(PollTimeout):
        wait_until(lambda: "building", lambda s: s == "done", timeout_s=5, interval_s=1,
                   clock=lambda: now[0], sleep=sleep)
    assert now[0] == 5


def test_stop_all_ends_a_spawned_process_and_forgets_its_pid(tmp_path: Path) -> None:
    part = stack.Part("sleeper", "sleep", tmp_path)
    pid = stack.spawn(part, [sys.executable, "-c", "import time; time.sleep(60)", "sleep"])
    # Until the child has exec'd, /proc shows the parent's command line.
    assert stack.wait_for(lambda: part.running_pid() == pid, 5.0)
    assert stack.stop_all([part], grace_s=5) == {"sleeper"}
    assert part.running_pid() is None and not part.pid_file.exists()


def test_a_pid_file_naming_nothing_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "docker.pid"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file.write_text(f"{gone.pid}\n")
    assert stack.clear_stale_pid_file(pid_file, "dockerd") is None
    assert not pid_file.exists()


def test_a_pid_file_naming_another_program_or_garbage_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "docker.pid"
    for text in (f"{os.getpid()}\n", "not a pid\n", ""):
        pid_file.write_text(text)
        assert stack.clear_stale_pid_file(pid_file, "dockerd") is None
        assert not pid_file.exists()
    assert stack.clear_stale_pid_file(pid_file, "dockerd") is None  # no file: nothing to do


def test_a_pid_file_of_the_running_daemon_is_kept(tmp_path: Path) -> None:
    part = stack.Part("daemon", "pretend-dockerd", tmp_path)
    pid = stack.spawn(part, [sys.executable, "-c", "import time; time.sleep(60)",
                             "pretend-dockerd"])
    try:
        assert stack.wait_for(lambda: part.running_pid() == pid, 5.0)
        assert stack.clear_stale_pid_file(part.pid_file, "pretend-dockerd") == pid
        assert part.pid_file.exists()
    finally:
        stack.stop_all([part], grace_s=5)


@dataclass
class FakeImage:
    id: str
    tags: list[str]


@dataclass
class FakeContainer:
    status: str
    image_id: str
    removed: bool = False
    label: str = "algohost.managed=1"

    @property
    def attrs(self) -> dict[str, str]:
        return {"ImageID": self.image_id}

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeDocker:
    """Just the docker-py surface `prune` uses."""

    def __init__(self, images: list[FakeImage], containers: list[FakeContainer]) -> None:
        self.removed_images: list[str] = []
        outer = self

        class Images:
            def get(self, name: str) -> FakeImage:
                return next(i for i in images if name in i.tags)

            def list(self, filters: dict[str, str]) -> list[FakeImage]:
                return images  # as if the base image carried the build label too

            def remove(self, image_id: str, force: bool = False) -> None:
                outer.removed_images.append(image_id)

        class Containers:
            def list(self, all: bool, filters: dict[str, str] | None = None,
                     sparse: bool = False) -> list[FakeContainer]:
                label = (filters or {}).get("label")
                return [c for c in containers if not c.removed
                        and (label is None or c.label.startswith(label))]

        self.images, self.containers = Images(), Containers()


def test_prune_keeps_running_containers_images_in_use_and_the_base() -> None:
    from algohost.cli.prune import prune_containers, prune_images

    containers = [FakeContainer("exited", "sha256:old"), FakeContainer("running", "sha256:used"),
                  FakeContainer("exited", "sha256:old", label="algohost.build-step=b_1")]
    images = [FakeImage("sha256:base", ["python:3.11-slim"]), FakeImage("sha256:old", ["a:1"]),
              FakeImage("sha256:used", ["b:1"])]
    client = FakeDocker(images, containers)
    assert prune_containers(client, include_running=False) == (2, 1)
    assert prune_images(client, "python:3.11-slim") == (1, 1)
    assert client.removed_images == ["sha256:old"]
