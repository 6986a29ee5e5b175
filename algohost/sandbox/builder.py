"""Builds one algorithm's image: a generated Dockerfile and an in-memory build context.

Every manifest value that reaches a line is checked against its grammar again (a stored
manifest is not trusted to be the one validated) and quoted; secret values never reach a
build. Images carry algohost labels so that prune and tests can find what they made.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import shlex
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker.errors

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed, InvalidManifest
from algohost.manifest import Manifest
from algohost.names import ALGORITHM_NAME, APT_PACKAGE, ENTRYPOINT, PIP_REQUIREMENT
from algohost.sandbox.docker import (
    LABEL_BUILD,
    LABEL_MANAGED,
    docker_client,
    translate_docker_errors,
)

RUNNER_DIR = Path(__file__).resolve().parent / "runner"
RUNNER_FILES = ("runner.py", "protocol.py", "algohost_runtime.py")
CA_BUNDLE_NAME = "extra-ca.crt"
CA_BUNDLE_PATH = "/etc/algohost/extra-ca.crt"
CA_ENV_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
VENV = "/opt/algo"
ALGORITHM_DIR = "/opt/algorithm"
REQUIREMENTS = "/tmp/algohost-requirements.txt"
BUILD_READ_TIMEOUT_S = 1800  # longest silence from the engine while a step compiles
FIXED_MTIME = 1_700_000_000  # identical content gives an identical context, so layers are reused


def _run(*commands: str) -> str:
    return "RUN " + " \\\n && ".join(commands)


class ImageBuilder:
    def __init__(self, settings: SandboxSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client(self.settings)
        return self._client

    def dockerfile(self, manifest: Manifest) -> str:
        """The Dockerfile for a manifest; its strings are checked again, as they reach a shell."""
        entrypoint = ENTRYPOINT.check(manifest.entrypoint, InvalidManifest, "entrypoint")
        system = [APT_PACKAGE.check(p, InvalidManifest, "build.system_packages")
                  for p in manifest.build.system_packages]
        packages = [PIP_REQUIREMENT.check(p, InvalidManifest, "build.python_packages")
                    for p in manifest.build.python_packages]
        requirements = manifest.build.requirements
        name = json.dumps(ALGORITHM_NAME.check(manifest.name, InvalidManifest, "name"))
        lines = [
            f"FROM {self.settings.base_image}",
            f'LABEL {LABEL_MANAGED}="1" algohost.algorithm={name}',
        ]
        if system:
            lines.append(
                _run(
                    "apt-get update",
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                    + " ".join(shlex.quote(p) for p in system),
                    "rm -rf /var/lib/apt/lists/*",
                )
            )
        installs = packages or requirements
        lines.append(f"RUN python3 -m venv {'' if installs else '--without-pip '}{VENV}")
        if installs:
            env = ""
            if self.settings.extra_ca_bundle:
                # pip, and anything a setup.py fetches, must trust the extra CA too.
                lines.append(f"COPY {CA_BUNDLE_NAME} {CA_BUNDLE_PATH}")
                env = "".join(f"{var}={CA_BUNDLE_PATH} " for var in CA_ENV_VARS)
            pip = f"{env}{VENV}/bin/pip install --no-cache-dir --disable-pip-version-check"
            if requirements:
                source = json.dumps(["src/" + _source_path(str(requirements)), REQUIREMENTS])
                lines.append(f"COPY {source}")
                lines.append(_run(f"{pip} -r {REQUIREMENTS}", f"rm {REQUIREMENTS}"))
            if packages:
                lines.append(_run(f"{pip} " + " ".join(shlex.quote(p) for p in packages)))
        lines += [
            f"COPY src/ {ALGORITHM_DIR}/",
            "COPY runner/ /opt/algohost/",
            f"WORKDIR {ALGORITHM_DIR}",
            f"ENV ALGOHOST_ENTRYPOINT={entrypoint} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
            f'CMD ["{VENV}/bin/python", "-u", "/opt/algohost/runner.py"]',
        ]
        return "\n".join(lines) + "\n"

    def context(self, source_files: Mapping[str, bytes], manifest: Manifest) -> bytes:
        """The gzip tar build context: Dockerfile, src/, runner/ and the optional CA bundle."""
        buffer = io.BytesIO()
        # The gzip header carries a time too: fixed, or two packs a second apart differ.
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=FIXED_MTIME) as packed, \
                tarfile.open(fileobj=packed, mode="w") as tar:
            _add(tar, "Dockerfile", self.dockerfile(manifest).encode("utf-8"))
            files = {f"src/{_source_path(name)}": data for name, data in source_files.items()}
            for directory in sorted({"src"}.union(*(_parents(name) for name in files))):
                _add_dir(tar, directory)
            for name, data in sorted(files.items()):
                _add(tar, name, data)
            _add_dir(tar, "runner")
            for name in RUNNER_FILES:
                _add(tar, f"runner/{name}", (RUNNER_DIR / name).read_bytes())
            if self.settings.extra_ca_bundle:
                _add(tar, CA_BUNDLE_NAME, Path(self.settings.extra_ca_bundle).read_bytes())
        return buffer.getvalue()

    def build(
        self,
        build_id: str,
        tag: str,
        source_files: Mapping[str, bytes],
        manifest: Manifest,
        on_log: Callable[[str], None],
    ) -> str:
        """Build and tag the image, streaming its log lines; returns the image id."""
        context = io.BytesIO(self.context(source_files, manifest))
        image_id = ""
        with translate_docker_errors(f"building {tag}", BuildFailed):
            chunks = self.client.api.build(
                fileobj=context,
                custom_context=True,
                encoding="gzip",
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                timeout=BUILD_READ_TIMEOUT_S,
                labels={LABEL_BUILD: build_id, LABEL_MANAGED: "1"},
            )
            for chunk in chunks:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = str(chunk.get("error") or detail.get("message") or "build failed")
                    on_log(message)
                    raise BuildFailed(message.strip(), build_id=build_id)
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in str(text).splitlines():
                    if line.strip():
                        on_log(line)
                image_id = chunk.get("aux", {}).get("ID", image_id)
            if not image_id:
                image_id = self.client.images.get(tag).id
        return str(image_id)

    def remove_image(self, tag: str) -> bool:
        """Remove an image by tag; False if it did not exist."""
        with translate_docker_errors(f"removing image {tag}"):
            try:
                self.client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                return False
        return True


def _source_path(name: str) -> str:
    """A source file's path inside src/; nothing may escape it."""
    path = posixpath.normpath(name.replace("\\", "/"))
    if path.startswith(("/", "../")) or path in (".", ".."):
        raise BuildFailed(f"source path {name!r} leaves the algorithm directory")
    return path


def _parents(name: str) -> set[str]:
    parents = set()
    while (name := posixpath.dirname(name)) not in ("", "/"):
        parents.add(name)
    return parents


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644  # readable by the container's unprivileged user, writable by none
    info.mtime = FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = FIXED_MTIME
    tar.addfile(info)
