"""`algohost publish` on the real stack: a version says whether it is what ran locally, and
`--git` publishes a commit, recording it, with the same commit giving the same version."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from algohost.cli.common import CliContext
from algohost.cli.local import read_algorithm
from algohost.cli.main import cli
from algohost.manifest import loads_manifest
from algohost.semver import Bump
from algohost.store.registry import Registry
from tests.stack import EXAMPLES, Stack, call, publish_own
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_at(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    """Runs the command line against the stack's API, with a state directory of its own;
    removes the local images the test's `run`s made."""
    local_builds: list[str] = []
    with stack.serving() as url:
        settings = stack.settings.with_overrides(api_url=url, api_key=stack.key,
                                                 state_dir=str(tmp_path / "state"))

        def invoke(*args: str) -> Result:
            if args[0] == "run":
                local_builds.append(read_algorithm(Path(args[1]),
                                                   settings.max_upload_bytes).build_id)
            return CliRunner().invoke(cli, list(args), obj=CliContext(settings))

        yield invoke
    for build_id in local_builds:
        for image in stack.docker.images.list(filters={"label": f"algohost.build={build_id}"}):
            for tag in image.tags or [image.id]:
                stack.docker.images.remove(tag, force=True)


def test_a_version_says_whether_it_is_the_source_that_ran_locally(
        cli_at: Any, tmp_path: Path) -> None:
    assert cli_at("init", "matcher", "--dir", str(tmp_path)).exit_code == 0
    directory = tmp_path / "matcher"
    ran = cli_at("run", str(directory), '{"name": "ada"}')
    assert ran.exit_code == 0, ran.stderr

    published = cli_at("publish", str(directory), "--json")
    assert published.exit_code == 0, published.stderr
    build = json.loads(published.stdout)
    assert build["status"] == "succeeded"
    assert build["matches_local"] is True
    assert build["local_hash"] == read_algorithm(directory, 10**8).content_hash

    with open(directory / "main.py", "a") as handle:
        handle.write("# edited after the local run\n")
    again = cli_at("publish", str(directory))
    assert again.exit_code == 0, again.stderr
    assert "is not the source that last ran locally" in again.stderr
    assert "Step 1/" in again.stderr and "Successfully tagged" in again.stderr  # streamed


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_publish_from_git_records_the_commit_and_the_same_commit_gives_the_same_version(
        cli_at: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "trunk")
    assert cli_at("init", "fromgit", "--dir", str(repo / "algorithms")).exit_code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "first")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "algorithms" / "fromgit" / "main.py").write_text("not committed: never published(")

    first = cli_at("publish", "--git", str(repo), "--subdir", "algorithms/fromgit", "--json")
    assert first.exit_code == 0, first.stderr
    build = json.loads(first.stdout)
    assert (build["status"], build["git_commit"], build["git_ref"]) == (
        "succeeded", commit, "trunk")
    assert "uncommitted changes" in first.stderr

    git(repo, "tag", "v1")
    again = cli_at("publish", "--git", str(repo), "--ref", "v1", "--subdir",
                   "algorithms/fromgit", "--json")
    assert again.exit_code == 0, again.stderr
    same = json.loads(again.stdout)
    assert (same["id"], same["version"], same["git_commit"]) == (
        build["id"], build["version"], commit)

    # A URL is cloned by the command line (bare, in a temporary directory), never the server.
    cloned = cli_at("publish", "--git", f"file://{repo}", "--ref", "v1", "--subdir",
                    "algorithms/fromgit", "--json")
    assert cloned.exit_code == 0, cloned.stderr
    assert "cloning" in cloned.stderr and json.loads(cloned.stdout)["id"] == build["id"]


@pytest.mark.parametrize("template", ["model", "notebook"])
def test_each_template_runs_locally_and_publishes_as_the_same_source(
        cli_at: Any, tmp_path: Path, template: str) -> None:
    assert cli_at("init", f"tpl{template}", "--template", template,
                  "--dir", str(tmp_path)).exit_code == 0
    directory = tmp_path / f"tpl{template}"
    ran = cli_at("run", str(directory), '{"name": "ada"}')
    assert ran.exit_code == 0, ran.stderr

    published = cli_at("publish", str(directory), "--json")
    assert published.exit_code == 0, published.stderr
    build = json.loads(published.stdout)
    assert (build["status"], build["matches_local"]) == ("succeeded", True)


def test_publish_from_git_refuses_a_subdir_outside_the_repository(
        cli_at: Any, tmp_path: Path) -> None:
    refused = cli_at("publish", "--git", str(tmp_path), "--subdir", "../elsewhere")
    assert refused.exit_code == 2
    assert "leaves the repository" in refused.stderr


def sse_events(response: Any, into: list[tuple[str, str, str]]) -> None:
    """(event, id, data) of a server-sent event stream, appended as they arrive."""
    event, event_id, data = "message", "", []
    for raw in response.iter_lines(chunk_size=1):
        line = raw.decode()
        if not line:
            if data:  # as a browser does: no data, no event
                into.append((event, event_id, "\n".join(data)))
            event, event_id, data = "message", "", []
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            event = line[7:]


def test_the_build_log_streams_live_as_events_and_resumes_after_the_last_event_id(
        stack: Stack, tmp_path: Path) -> None:
    registry = Registry(stack.redis)
    manifest = loads_manifest('name = "streamed"\nentrypoint = "main:apply"\n')
    build, _ = registry.publish(stack.owner, "streamed", "ab" * 32, manifest, b"", Bump.PATCH)
    events: list[tuple[str, str, str]] = []
    path = f"/v1/algorithms/{stack.owner}/streamed/versions/{build.version}/logs"
    with stack.serving() as url:
        response = requests.get(f"{url}{path}?follow=1", headers=stack.auth, stream=True,
                                timeout=60)
        assert response.headers["Content-Type"].startswith("text/event-stream")
        reader = threading.Thread(target=sse_events, args=(response, events), daemon=True)
        reader.start()
        registry.append_log(build.id, "Step 1/2 : first\n")
        eventually(lambda: [e for e in events if e[2] == "Step 1/2 : first"], 30,
                   "the first line, before the build goes on")
        registry.append_log(build.id, "Step 2/2 : second\n")
        registry.mark_succeeded(build.id, image_id="sha256:0", finished_at="now")
        reader.join(30)
        assert [(e[0], e[2]) for e in events] == [
            ("message", "Step 1/2 : first"), ("message", "Step 2/2 : second"),
            ("end", '{"status": "succeeded", "error": null, "reason": null}')]

        first_id = events[0][1]
        resumed = requests.get(f"{url}{path}", headers={**stack.auth, "Last-Event-ID": first_id},
                               timeout=60)
    assert resumed.status_code == 200
    assert "first" not in resumed.text and "data: Step 2/2 : second" in resumed.text


def test_a_successful_build_starts_a_warm_container_so_the_first_call_is_warm(
        stack: Stack, tmp_path: Path) -> None:
    ref = publish_own(stack, EXAMPLES / "hello", tmp_path, "prewarmed")
    eventually(lambda: stack.containers_of(ref, running_only=True), 120,
               lambda: f"a container of {ref} before any call: {stack.worker_log()}")

    job = call(stack, ref, {"name": "first"})
    assert job["status"] == "succeeded", job
    assert job["warm"] is True and job["metrics"]["cold_start_ms"] == 0
    assert len(stack.containers_of(ref)) == 1
