"""What local development asks of the engine beyond sessions: a pytest layer on top of a
built image, and one command run to its end in a hardened container of it.

The container gets the session's parameters (`container_params`), so a test runs under
the limits a call runs under; the wall clock is enforced from outside, and the container
is removed whatever happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed
from algohost.sandbox.base import ContainerSpec
from algohost.sandbox.builder import LABEL_CACHE_SCOPE, ImageBuilder, cache_scope
from algohost.sandbox.buildplan import VENV, Step
from algohost.sandbox.docker import (
    EXIT_WAIT_S,
    LABEL_BUILD,
    LABEL_MANAGED,
    container_params,
    docker_client,
    remove_container,
    translate_docker_errors,
)

PYTEST_DIR = "/tmp/algohost-pytest"
TIMEOUT_EXIT_CODE = 124  # as timeout(1) reports it
# The image's interpreter is the one tests must run under: 3.11 on Linux.
_MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.0",
               "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython",
               "extra": ""}
# Copies pytest into the venv unless the algorithm's own dependencies brought one.
_INSTALL = (
    "import importlib.util as u, shutil, sysconfig; u.find_spec('pytest') or "
    f"shutil.copytree('{PYTEST_DIR}', sysconfig.get_paths()['purelib'], dirs_exist_ok=True); "
    f"shutil.rmtree('{PYTEST_DIR}')"
)


@dataclass
class CommandResult:
    exit_code: int
    timed_out: bool
    seconds: float


def pytest_distributions(root: str = "pytest") -> list[metadata.Distribution]:
    """pytest and what it needs on Linux with Python 3.11, as installed next to algohost."""
    from packaging.requirements import Requirement  # pytest's own dependency

    found: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise BuildFailed(f"`algohost test` copies {name} from this Python into the test "
                              f"image; install it here first: pip install pytest") from exc
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(_MARKER_ENV):
                todo.append(requirement.name)
    return [found[key] for key in sorted(found)]


def _pure_files(dists: Iterable[metadata.Distribution]) -> Iterable[tuple[str, Path]]:
    for dist in dists:
        for file in dist.files or []:
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts or file.suffix in (".pyc", ".so"):
                continue  # console scripts live outside site-packages; tests use `-m pytest`
            yield file.as_posix(), Path(str(dist.locate_file(file)))


def pytest_step(dists: Iterable[metadata.Distribution]) -> Step:
    """The layer adding pytest: the same files give the same step, so it is cached."""
    files = tuple(sorted((f"{PYTEST_DIR}/{name}", path.read_bytes())
                         for name, path in _pure_files(dists)))
    return Step("add pytest", (f"{VENV}/bin/python", "-c", _INSTALL), files=files)


class LocalEngine:
    """The engine calls of `algohost test`; docker-py's errors are translated here."""

    def __init__(self, settings: SandboxSettings, client: Any = None) -> None:
        self.settings = settings
        self.client = client if client is not None else docker_client(settings)

    def test_image(self, image: str, build_id: str, owner: str) -> str:
        """The id of `image` with pytest added, built by the platform's builder in its cage
        and cached like any other step."""
        step = pytest_step(pytest_distributions())
        builder = ImageBuilder(self.settings, self.client)
        labels = {LABEL_MANAGED: "1", LABEL_BUILD: build_id,
                  LABEL_CACHE_SCOPE: cache_scope(owner, image)}
        deadline = time.monotonic() + self.settings.build_timeout_s
        with translate_docker_errors(f"adding pytest to {image}", BuildFailed):
            parent = str(self.client.images.get(image).id)
            return builder.run_step(parent, step, labels[LABEL_CACHE_SCOPE], labels, deadline,
                                    lambda line: None)

    def run_command(self, spec: ContainerSpec, command: list[str], timeout_s: float,
                    on_output: Callable[[bytes], None], owner: str) -> CommandResult:
        """Run `command` in a hardened container of `spec.image`, streaming its output."""
        params = container_params(spec, self.settings, owner)
        params.update(stdin_open=False, command=command)
        started = time.monotonic()
        with translate_docker_errors(f"running a container of {spec.image}"):
            container = self.client.containers.create(spec.image, **params)
        reader: threading.Thread | None = None
        try:
            with translate_docker_errors("running the container"):
                # Attached before the start, so no early output is lost (no log driver).
                stream = self.client.api.attach(container.id, stdout=True, stderr=True,
                                                stream=True, logs=False)
                reader = threading.Thread(target=_drain, args=(stream, on_output), daemon=True)
                reader.start()
                container.start()
                try:
                    code = int(container.wait(timeout=timeout_s).get("StatusCode", 1))
                    timed_out = False
                except requests.exceptions.RequestException:
                    code, timed_out = TIMEOUT_EXIT_CODE, True
        finally:
            remove_container(container)  # also ends the attach stream of a container still running
            if reader is not None:
                reader.join(timeout=EXIT_WAIT_S)
        return CommandResult(code, timed_out, time.monotonic() - started)


def _drain(stream: Iterable[bytes], on_output: Callable[[bytes], None]) -> None:
    try:
        for chunk in stream:
            on_output(chunk)
    except (OSError, requests.exceptions.RequestException, docker.errors.DockerException):
        pass  # the container was removed under the stream: its end is reported by wait
