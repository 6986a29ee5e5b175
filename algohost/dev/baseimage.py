"""Makes the base image locally when it is missing: debootstrap a minimal Debian, import it.

There is no image registry here. Needs root (debootstrap) and takes about a minute, so it
does nothing when the image exists; it never removes or replaces an existing base image.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker.errors

from algohost.config import SandboxSettings
from algohost.errors import SandboxError
from algohost.sandbox.docker import docker_client, translate_docker_errors

SUITE = "bookworm"
IMPORTED_AS = ("algohost/base", SUITE)
PACKAGES = ("python3", "python3-venv", "python3-dev", "ca-certificates")
IMPORT_TIMEOUT_S = 900  # the engine unpacks a few hundred MB before it answers
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'LABEL algohost.base="1"',
]


def debootstrap_command(rootfs: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
        mirror,
    ]


def ensure_base_image(
    settings: SandboxSettings,
    mirror: str,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> bool:
    """Create `settings.base_image` unless it exists; True if it was created."""
    client = docker_client(settings, timeout_s=IMPORT_TIMEOUT_S)
    with translate_docker_errors(f"looking for {settings.base_image}"):
        try:
            client.images.get(settings.base_image)
            return False
        except docker.errors.ImageNotFound:
            pass
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="algohost-rootfs-", dir=workdir))
    try:
        log(f"debootstrap {SUITE} from {mirror} into {rootfs} (about a minute)")
        _run(debootstrap_command(rootfs, mirror), log)
        repository, tag = IMPORTED_AS
        log(f"importing the root filesystem as {repository}:{tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            with translate_docker_errors(f"importing {repository}:{tag}"):
                client.api.import_image(
                    src=tar.stdout,
                    repository=repository,
                    tag=tag,
                    changes=IMPORT_CHANGES,
                    stream_src=True,
                )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            if tar.wait() != 0:
                raise SandboxError(f"tar of {rootfs} failed with exit code {tar.returncode}")
        if settings.base_image != f"{repository}:{tag}":
            name, _, base_tag = settings.base_image.rpartition(":")
            if not name or "/" in base_tag:  # no tag given, or a registry port
                name, base_tag = settings.base_image, "latest"
            with translate_docker_errors(f"tagging {settings.base_image}"):
                client.api.tag(f"{repository}:{tag}", name, base_tag)
        log(f"base image {settings.base_image} is ready")
        return True
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _run(command: list[str], log: Callable[[str], None]) -> None:
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except OSError as exc:
        raise SandboxError(f"cannot run {command[0]}: {exc}") from exc
    assert process.stdout is not None
    for line in process.stdout:
        log(line.rstrip())
    if process.wait() != 0:
        raise SandboxError(f"{command[0]} failed with exit code {process.returncode}")
