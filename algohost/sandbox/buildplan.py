"""What an algorithm's image is made of: a list of typed steps, never a Dockerfile.

A manifest value never becomes text that something parses again: a package is one
argv element after `--`, passed to a fixed shell script as a positional parameter
("$@") or straight to pip, and files arrive as tar archives. So no package string can
add a step, a shell command or an option, whatever characters it holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed, InvalidManifest
from algohost.manifest import Manifest
from algohost.names import ALGORITHM_NAME, APT_PACKAGE, ENTRYPOINT, PIP_REQUIREMENT, Grammar
from algohost.sandbox.runner import protocol

RUNNER_DIR = Path(__file__).resolve().parent / "runner"
RUNNER_FILES = ("runner.py", "protocol.py", "algohost_runtime.py")
# Only in a notebook algorithm's image.
NOTEBOOK_RUNNER_FILES = ("notebook.py", "relay.py", "cells.py")
# What the notebook runner imports, installed into a notebook algorithm's venv: the same
# pins as pyproject.toml's, which the API validates notebooks with (a test holds them equal).
NOTEBOOK_PACKAGES = ("nbformat==5.10.4", "nbclient==0.10.4", "jupyter-client==8.10.0",
                     "ipykernel==7.4.0")
CA_BUNDLE_PATH = "/etc/algohost/extra-ca.crt"
CA_ENV_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
VENV = "/opt/algo"
ALGORITHM_DIR = "/opt/algorithm"
RUNNER_INSTALL_DIR = "/opt/algohost"
REQUIREMENTS = "/tmp/algohost-requirements.txt"
FIXED_MTIME = 1_700_000_000  # identical content gives an identical archive, so a step's key
# apt runs maintainer scripts as root: it keeps only what dpkg and apt's _apt sandbox need.
APT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
# Fixed scripts: the packages are their positional parameters, never part of the text.
APT_SCRIPT = ("export DEBIAN_FRONTEND=noninteractive && apt-get update"
              " && apt-get install -y --no-install-recommends -- \"$@\""
              " && rm -rf /var/lib/apt/lists/*")
PIP = (f"{VENV}/bin/pip", "install", "--no-cache-dir", "--disable-pip-version-check")
REQUIREMENTS_SCRIPT = f'"$@" -r {REQUIREMENTS}; status=$?; rm -f {REQUIREMENTS}; exit $status'


@dataclass(frozen=True)
class Step:
    """One layer: files added, then (optionally) a command run in a caged container."""

    title: str
    argv: tuple[str, ...] = ()
    files: tuple[tuple[str, bytes], ...] = ()  # (absolute path in the image, content)
    capabilities: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """What the step does, as a digest: equal fingerprints on an equal parent give an
        equal layer."""
        files = [[path, hashlib.sha256(data).hexdigest()] for path, data in self.files]
        text = json.dumps([self.argv, files, sorted(self.capabilities)])
        return hashlib.sha256(text.encode()).hexdigest()

    def archive(self) -> bytes:
        """The step's files as a tar to extract at /."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            names = {path.lstrip("/"): data for path, data in self.files}
            # Directories the step creates, not the top ones (/opt, /etc, /tmp) whose
            # owner and mode the base image decides.
            made = sorted({d for name in names for d in _parents(name) if "/" in d})
            for directory in made:
                _add_dir(tar, directory)
            for name, data in sorted(names.items()):
                _add(tar, name, data)
        return buffer.getvalue()


@dataclass(frozen=True)
class ImageConfig:
    """The finished image's configuration, set as structured container config."""

    cmd: list[str]
    env: dict[str, str]
    workdir: str
    labels: dict[str, str] = field(default_factory=dict)


def plan(manifest: Manifest, sources: Mapping[str, bytes],
         settings: SandboxSettings) -> list[Step]:
    """The steps that make a manifest's image, cacheable ones first."""
    system = [_checked(APT_PACKAGE, p, "build.system_packages")
              for p in manifest.build.system_packages]
    packages = [_checked(PIP_REQUIREMENT, p, "build.python_packages")
                for p in manifest.build.python_packages]
    requirements = manifest.build.requirements
    steps = []
    if system:
        steps.append(Step("apt-get install " + " ".join(system),
                          ("/bin/sh", "-c", APT_SCRIPT, "apt", *system),
                          capabilities=APT_CAPABILITIES))
    notebook = is_notebook(manifest)
    installs = bool(packages or requirements or notebook)
    venv = ("python3", "-m", "venv", *(() if installs else ("--without-pip",)), VENV)
    steps.append(Step(" ".join(venv), venv))
    pip: tuple[str, ...] = PIP
    if installs and settings.extra_ca_bundle:
        # pip, and anything a setup.py fetches, must trust the extra CA too.
        ca = Path(settings.extra_ca_bundle).read_bytes()
        steps.append(Step(f"add {CA_BUNDLE_PATH}", files=((CA_BUNDLE_PATH, ca),)))
        pip = ("env", *(f"{var}={CA_BUNDLE_PATH}" for var in CA_ENV_VARS), *PIP)
    if notebook:  # before the algorithm's own packages: one cached layer for all notebooks
        steps.append(Step("pip install the notebook runner's " + " ".join(NOTEBOOK_PACKAGES),
                          (*pip, "--", *NOTEBOOK_PACKAGES)))
    if requirements:
        data = sources.get(str(requirements))
        if data is None:
            raise BuildFailed(f"the requirements file {requirements!r} is not in the source")
        steps.append(Step(f"pip install -r {source_path(str(requirements))}",
                          ("/bin/sh", "-c", REQUIREMENTS_SCRIPT, "pip", *pip),
                          files=((REQUIREMENTS, data),)))
    if packages:
        steps.append(Step("pip install " + " ".join(packages), (*pip, "--", *packages)))
    files = [(f"{ALGORITHM_DIR}/{source_path(name)}", data) for name, data in sources.items()]
    files += [(f"{RUNNER_INSTALL_DIR}/{name}", (RUNNER_DIR / name).read_bytes())
              for name in RUNNER_FILES + (NOTEBOOK_RUNNER_FILES if notebook else ())]
    steps.append(Step(f"add the source to {ALGORITHM_DIR}", files=tuple(sorted(files))))
    return steps


def is_notebook(manifest: Manifest) -> bool:
    return manifest.entrypoint.endswith(protocol.NOTEBOOK_SUFFIX)


def image_config(manifest: Manifest, labels: Mapping[str, str]) -> ImageConfig:
    entrypoint = _checked(ENTRYPOINT, manifest.entrypoint, "entrypoint")
    name = _checked(ALGORITHM_NAME, manifest.name, "name")
    return ImageConfig(
        cmd=[f"{VENV}/bin/python", "-u", f"{RUNNER_INSTALL_DIR}/runner.py"],
        env={"ALGOHOST_ENTRYPOINT": entrypoint, "PYTHONUNBUFFERED": "1",
             "PYTHONDONTWRITEBYTECODE": "1"},
        workdir=ALGORITHM_DIR,
        labels={**labels, "algohost.algorithm": name},
    )


def _checked(grammar: Grammar, value: object, where: str) -> str:
    # The manifest was validated at publish; a stored record is checked again, so a
    # value that slipped past (an older record, a bug) fails here, before any container.
    return grammar.check(value if isinstance(value, str) else repr(value), InvalidManifest,
                         where)


def source_path(name: str) -> str:
    """A source file's path inside the algorithm directory; nothing may escape it."""
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
