"""The `algohost` command line against a stub HTTP server on 127.0.0.1: no services needed."""

from __future__ import annotations

import gzip
import io
import json
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import pytest
from click.testing import CliRunner, Result

from algohost.cli import stack
from algohost.cli.client import ApiClient, ApiError, ApiUnreachable
from algohost.cli.common import CliContext, PollTimeout, wait_until
from algohost.cli.main import cli
from algohost.config import Settings


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class StubApi:
    """Answers (method, path) with queued (status, body) replies; the last one repeats."""

    url: str = ""
    routes: dict[tuple[str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, method: str, path: str, *replies: tuple[int, Any]) -> None:
        self.routes[(method, path)] = list(replies)

    def reply(self, method: str, path: str) -> tuple[int, Any]:
        replies = self.routes.get((method, path))
        if not replies:
            return 404, {"error": {"code": "not_found", "message": f"no route {path}"}}
        return replies.pop(0) if len(replies) > 1 else replies[0]


@pytest.fixture
def api() -> Iterator[StubApi]:
    stub = StubApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            stub.seen.append(Seen(self.command, parts.path, parse_qs(parts.query),
                                  dict(self.headers.items()), self.rfile.read(length)))
            status, body = stub.reply(self.command, parts.path)
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            kind = "text/html" if isinstance(body, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


def run(url: str, args: list[str], tmp_path: Path, *, key: str = "k", stdin: str | None = None
        ) -> Result:
    settings = Settings(api_url=url, api_key=key, state_dir=str(tmp_path / "state"))
    return CliRunner().invoke(cli, args, obj=CliContext(settings), input=stdin)


def job(status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    record = {"id": "j1", "algorithm": "alice/hello@1.0.0", "status": status, "output": None,
              "error": None, "logs": "", "metrics": {"queue_ms": 1.0, "run_ms": 2.0}}
    return record | extra


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- input parsing ---------------------------------------------------------------------


def test_call_sends_the_json_argument_and_prints_the_output(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (200, job(output={"greeting": "hello world"})))
    result = run(api.url, ["call", "alice/hello", '{"name": "world"}'], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hello world"}
    request = api.seen[0]
    assert json.loads(request.body) == {"algorithm": "alice/hello", "input": {"name": "world"}}
    assert request.headers["Authorization"] == "Bearer k"
    assert request.headers["Prefer"] == "wait=60"


def test_dash_reads_the_input_from_stdin(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (200, job(output=1)))
    result = run(api.url, ["call", "alice/hello", "-"], tmp_path, stdin='[1, 2, 3]')
    assert result.exit_code == 0, result.output
    assert json.loads(api.seen[0].body)["input"] == [1, 2, 3]


def test_at_file_reads_the_input_from_a_file(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (200, job(output=1)))
    (tmp_path / "in.json").write_text('{"x": null}')
    result = run(api.url, ["call", "alice/hello", f"@{tmp_path / 'in.json'}"], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(api.seen[0].body)["input"] == {"x": None}


@pytest.mark.parametrize("given", ["{not json", "@/nonexistent/in.json"])
def test_unusable_input_is_a_usage_error_not_a_traceback(
    given: str, api: StubApi, tmp_path: Path
) -> None:
    result = run(api.url, ["call", "alice/hello", given], tmp_path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "not valid JSON" in result.output or "cannot read" in result.output
    assert api.seen == []


@pytest.mark.parametrize("args", [["call", "hello", "1"], ["versions", "alice/hello@1.0.0"],
                                  ["call", "alice/", "1"], ["publish", "/nonexistent/dir"]])
def test_malformed_arguments_exit_2(args: list[str], api: StubApi, tmp_path: Path) -> None:
    result = run(api.url, args, tmp_path)
    assert result.exit_code == 2, result.output
    assert api.seen == []


# -- errors from the API ---------------------------------------------------------------


def test_api_error_body_becomes_a_click_error_with_its_code(api: StubApi, tmp_path: Path) -> None:
    api.on("GET", "/v1/jobs/nope",
           (404, {"error": {"code": "job_not_found", "message": "no job nope"}}))
    result = run(api.url, ["job", "nope"], tmp_path)
    assert result.exit_code == 1
    assert "no job nope" in result.stderr and "job_not_found" in result.stderr
    with pytest.raises(ApiError) as caught:
        ApiClient(api.url, "k").job("nope")
    assert (caught.value.code, caught.value.status) == ("job_not_found", 404)
    assert isinstance(caught.value, click.ClickException)


def test_a_foreign_error_page_is_still_reported(api: StubApi, tmp_path: Path) -> None:
    api.on("GET", "/v1/jobs", (502, b"<html>bad gateway</html>"))
    with pytest.raises(ApiError) as caught:
        ApiClient(api.url, "k").jobs()
    assert caught.value.code == "http_502"
    assert "bad gateway" in caught.value.detail


def test_connection_refused_points_at_dev_up(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(url, ["jobs"], tmp_path)
    assert result.exit_code == 1
    assert f"cannot reach the algohost API at {url}; is `algohost dev up` running?" in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(ApiUnreachable):
        ApiClient(url, "k").whoami()


def test_missing_api_key_is_explained_before_any_request(api: StubApi, tmp_path: Path) -> None:
    result = run(api.url, ["jobs"], tmp_path, key="")
    assert result.exit_code == 1
    assert "ALGOHOST_API_KEY" in result.stderr
    assert api.seen == []


# -- jobs ------------------------------------------------------------------------------


def test_call_polls_a_job_that_outlives_the_wait(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (202, job("queued")))
    api.on("GET", "/v1/jobs/j1", (200, job("running")), (200, job(output="done")))
    result = run(api.url, ["call", "alice/hello", "1", "--wait", "0"], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == "done"
    assert "Prefer" not in api.seen[0].headers
    assert [s.path for s in api.seen[1:]] == ["/v1/jobs/j1", "/v1/jobs/j1"]


def test_failed_call_prints_the_error_to_stderr_and_exits_1(api: StubApi, tmp_path: Path) -> None:
    error = {"type": "ValueError", "message": "x must be even", "traceback": "Traceback: ..."}
    api.on("POST", "/v1/jobs", (200, job("failed", reason="exception", error=error,
                                         logs="about to fail\n")))
    result = run(api.url, ["call", "alice/failing", '{"x": 1}', "--metrics"], tmp_path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ValueError: x must be even" in result.stderr
    assert "about to fail" in result.stderr
    assert "run_ms" in result.stderr


def test_json_flag_prints_the_whole_job_record(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (200, job(output=42)))
    result = run(api.url, ["call", "alice/hello@1.0.0", "{}", "--json", "--timeout", "5"],
                 tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "j1"
    assert json.loads(api.seen[0].body)["timeout_s"] == 5


def test_submit_prints_only_the_job_id(api: StubApi, tmp_path: Path) -> None:
    api.on("POST", "/v1/jobs", (202, job("queued")))
    result = run(api.url, ["submit", "alice/hello", "{}"], tmp_path)
    assert (result.exit_code, result.stdout) == (0, "j1\n")


def test_jobs_passes_the_limit(api: StubApi, tmp_path: Path) -> None:
    api.on("GET", "/v1/jobs", (200, {"jobs": [job()]}))
    result = run(api.url, ["jobs", "--limit", "5"], tmp_path)
    assert result.exit_code == 0, result.output
    assert api.seen[0].query == {"limit": ["5"]}
    assert "j1" in result.stdout


# -- publish ---------------------------------------------------------------------------


def algorithm_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "hello"
    (directory / "__pycache__").mkdir(parents=True)
    (directory / "algorithm.toml").write_text('name = "hello"\nentrypoint = "main:apply"\n')
    (directory / "main.py").write_text("def apply(x):\n    return x\n")
    (directory / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    return directory


def build(status: str, **extra: Any) -> dict[str, Any]:
    record = {"id": "b1", "owner": "alice", "name": "hello", "version": "0.2.0",
              "ref": "alice/hello@0.2.0", "status": status}
    return record | extra


def test_publish_uploads_a_clean_archive_and_prints_the_ref(api: StubApi, tmp_path: Path) -> None:
    api.on("GET", "/v1/whoami", (200, {"owner": "alice"}))
    api.on("POST", "/v1/algorithms/alice/hello/versions", (202, {"build": build("queued")}))
    api.on("GET", "/v1/algorithms/alice/hello/versions/0.2.0", (200, build("succeeded")))
    result = run(api.url, ["publish", str(algorithm_dir(tmp_path)), "--bump", "minor"], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "alice/hello@0.2.0\n"
    upload = api.seen[1]
    assert upload.headers["Content-Type"] == "application/gzip"
    assert upload.query == {"bump": ["minor"]}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(upload.body))) as tar:
        assert sorted(tar.getnames()) == ["algorithm.toml", "main.py"]


def test_failed_build_shows_the_last_60_log_lines(api: StubApi, tmp_path: Path) -> None:
    logs = "".join(f"step {n}\n" for n in range(100))
    api.on("GET", "/v1/whoami", (200, {"owner": "alice"}))
    api.on("POST", "/v1/algorithms/alice/hello/versions", (202, {"build": build("queued")}))
    api.on("GET", "/v1/algorithms/alice/hello/versions/0.2.0", (200, build("failed", logs=logs)))
    result = run(api.url, ["publish", str(algorithm_dir(tmp_path))], tmp_path)
    assert result.exit_code == 1
    assert "step 99" in result.stderr and "step 40" in result.stderr
    assert "step 39\n" not in result.stderr


def test_publish_rejects_a_directory_without_manifest(api: StubApi, tmp_path: Path) -> None:
    result = run(api.url, ["publish", str(tmp_path)], tmp_path)
    assert result.exit_code == 1
    assert "algorithm.toml" in result.stderr
    assert api.seen == []


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
    assert part.running_pid() == pid
    assert stack.stop_all([part], grace_s=5) == {"sleeper"}
    assert part.running_pid() is None and not part.pid_file.exists()


@dataclass
class FakeImage:
    id: str
    tags: list[str]


@dataclass
class FakeContainer:
    status: str
    image_id: str
    removed: bool = False

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
                return [c for c in containers if not c.removed]

        self.images, self.containers = Images(), Containers()


def test_prune_keeps_running_containers_images_in_use_and_the_base() -> None:
    from algohost.cli.prune import prune_containers, prune_images

    containers = [FakeContainer("exited", "sha256:old"), FakeContainer("running", "sha256:used")]
    images = [FakeImage("sha256:base", ["python:3.11-slim"]), FakeImage("sha256:old", ["a:1"]),
              FakeImage("sha256:used", ["b:1"])]
    client = FakeDocker(images, containers)
    assert prune_containers(client, include_running=False) == (1, 1)
    assert prune_images(client, "python:3.11-slim") == (1, 1)
    assert client.removed_images == ["sha256:old"]
