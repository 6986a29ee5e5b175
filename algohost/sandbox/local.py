"""What local development asks of the engine beyond sessions: a pytest layer on top of a
built image, and one command run to its end in a hardened container of it.

The container gets the session's parameters (`container_params`), so a test runs under
the limits a call runs under; the wall clock is enforced from outside, and the container
is removed whatever happens.
"""

from __future__ import annotations

import io
import shlex
import tarfile
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
from algohost.errors import BuildFailed, SandboxError
from algohost.sandbox.base import ContainerSpec
from algohost.sandbox.builder import FIXED_MTIME, VENV
from algohost.sandbox.docker import (
    EXIT_WAIT_S,
    LABEL_BUILD,
    LABEL_MANAGED,
    _remove,
    container_params,
    docker_client,
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
    f"shutil.copytree('{PYTEST_DIR}', sysconfig.get_paths()['purelib'], dirs_exist_ok=True)"
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


def test_layer_context(image: str, dists: Iterable[metadata.Distribution]) -> bytes:
    """A build context adding pytest to `image`: same bytes for the same pytest, so cached."""
    dockerfile = "\n".join([
        f"FROM {image}",
        f'LABEL {LABEL_MANAGED}="1"',
        f"COPY pytest/ {PYTEST_DIR}/",
        f"RUN {VENV}/bin/python -c {shlex.quote(_INSTALL)} && rm -rf {PYTEST_DIR}",
    ]) + "\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode())
        for name, path in sorted(_pure_files(dists)):
            _add(tar, f"pytest/{name}", path.read_bytes())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))


class LocalEngine:
    """The engine calls of `algohost test`; docker-py's errors are translated here."""

    def __init__(self, settings: SandboxSettings, client: Any = None) -> None:
        self.settings = settings
        self.client = client if client is not None else docker_client(settings)

    def test_image(self, image: str, build_id: str) -> str:
        """`image` with pytest added, built once per image and pytest version."""
        dists = pytest_distributions()
        tag = f"{image}-pytest{metadata.version('pytest')}"
        try:
            self.client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise SandboxError(f"looking for {tag}: {exc.explanation or exc}") from exc
        context = io.BytesIO(test_layer_context(image, dists))
        with translate_docker_errors(f"building {tag}", BuildFailed):
            for chunk in self.client.api.build(fileobj=context, custom_context=True, tag=tag,
                                               rm=True, forcerm=True, decode=True,
                                               labels={LABEL_BUILD: build_id,
                                                       LABEL_MANAGED: "1"}):
                if "error" in chunk or "errorDetail" in chunk:
                    raise BuildFailed(str(chunk.get("error") or chunk.get("errorDetail")),
                                      build_id=build_id)
        return tag

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
            _remove(container)  # also ends the attach stream of a container still running
            if reader is not None:
                reader.join(timeout=EXIT_WAIT_S)
        return CommandResult(code, timed_out, time.monotonic() - started)


def _drain(stream: Iterable[bytes], on_output: Callable[[bytes], None]) -> None:
    try:
        for chunk in stream:
            on_output(chunk)
    except (OSError, requests.exceptions.RequestException, docker.errors.DockerException):
        pass  # the container was removed under the stream: its end is reported by wait
