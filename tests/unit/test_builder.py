"""Dockerfile generation and the build context, without a Docker engine."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed, InvalidManifest
from algohost.manifest import Manifest, manifest_from_dict
from algohost.sandbox.builder import ImageBuilder


def manifest(**build: Any) -> Manifest:
    """A manifest as stored; not validated again, so hostile values reach the builder."""
    return manifest_from_dict({
        "name": "hello",
        "entrypoint": "main:apply",
        "python": "3.11",
        "build": {"python_packages": [], "requirements": None, "system_packages": [], **build},
        "resources": {"timeout_s": 30, "memory_mb": 512, "cpus": 1.0, "network": False},
        "secrets": {"names": [], "as_env": False},
    })


def instructions(dockerfile: str) -> list[str]:
    return [line.split()[0] for line in dockerfile.splitlines() if line and line[0] != " "]


def test_minimal_dockerfile_has_the_layers_in_order() -> None:
    text = ImageBuilder(SandboxSettings(base_image="base:1")).dockerfile(manifest())
    assert text.splitlines()[0] == "FROM base:1"
    assert instructions(text) == ["FROM", "LABEL", "RUN", "COPY", "COPY", "WORKDIR", "ENV", "CMD"]
    assert "python3 -m venv --without-pip /opt/algo" in text
    assert "apt-get" not in text and "pip install" not in text
    assert "COPY src/ /opt/algorithm/" in text and "COPY runner/ /opt/algohost/" in text
    assert "ENV ALGOHOST_ENTRYPOINT=main:apply PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1" in text
    assert text.rstrip().endswith('CMD ["/opt/algo/bin/python", "-u", "/opt/algohost/runner.py"]')


def test_system_packages_are_installed_with_apt_and_the_lists_removed() -> None:
    text = ImageBuilder(SandboxSettings()).dockerfile(manifest(system_packages=["libpq-dev"]))
    apt = next(line for line in text.split("\nRUN ") if "apt-get update" in line)
    assert "apt-get install -y --no-install-recommends libpq-dev" in apt
    assert apt.index("apt-get update") < apt.index("install") < apt.index("rm -rf /var/lib/apt")
    assert text.index("apt-get") < text.index("python3 -m venv")


def test_python_packages_go_into_the_venv_quoted() -> None:
    text = ImageBuilder(SandboxSettings()).dockerfile(manifest(python_packages=["numpy==2.1.*"]))
    assert "python3 -m venv /opt/algo\n" in text
    assert "/opt/algo/bin/pip install --no-cache-dir" in text and "'numpy==2.1.*'" in text
    assert "PIP_CERT" not in text
    assert text.index("pip install") < text.index("COPY src/")


def test_requirements_file_is_installed_before_the_source_is_copied() -> None:
    text = ImageBuilder(SandboxSettings()).dockerfile(manifest(requirements="reqs/base.txt"))
    assert 'COPY ["src/reqs/base.txt", "/tmp/algohost-requirements.txt"]' in text
    assert "pip install --no-cache-dir --disable-pip-version-check -r" in text
    assert text.index("-r /tmp/algohost-requirements.txt") < text.index("COPY src/ ")


def test_extra_ca_bundle_is_copied_and_trusted_during_pip_install() -> None:
    settings = SandboxSettings(extra_ca_bundle="/etc/ssl/certs/ca-certificates.crt")
    text = ImageBuilder(settings).dockerfile(manifest(python_packages=["requests"]))
    assert "COPY extra-ca.crt /etc/algohost/extra-ca.crt" in text
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        assert f"{var}=/etc/algohost/extra-ca.crt" in text


def test_shell_metacharacters_in_package_names_stay_quoted() -> None:
    m = manifest(python_packages=["x; rm -rf /"])
    text = ImageBuilder(SandboxSettings()).dockerfile(m)
    assert "'x; rm -rf /'" in text


@pytest.mark.parametrize("build", [
    {"system_packages": ["y && reboot"]},
    {"system_packages": ["libpq-dev\nRUN curl evil"]},
    {"python_packages": ["numpy\nRUN curl evil"]},
    {"python_packages": ["numpy\r"]},
    {"python_packages": ["--index-url=http://evil"]},
])
def test_a_package_string_that_could_break_out_of_its_line_is_refused(build: Any) -> None:
    with pytest.raises(InvalidManifest):
        ImageBuilder(SandboxSettings()).dockerfile(manifest(**build))


@pytest.mark.parametrize("entrypoint", ["main", "main:", "main:apply; rm", "../x:apply", "",
                                        "main:apply\n", "main:apply\nRUN id"])
def test_a_malformed_entrypoint_is_refused(entrypoint: str) -> None:
    with pytest.raises(InvalidManifest):
        ImageBuilder(SandboxSettings()).dockerfile(replace(manifest(), entrypoint=entrypoint))


def test_context_holds_dockerfile_source_runner_and_ca_bundle(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"CERT")
    builder = ImageBuilder(SandboxSettings(extra_ca_bundle=str(ca)))
    data = builder.context({"main.py": b"def apply(x): return x", "pkg/sub/m.py": b""}, manifest())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {"src/pkg", "src/pkg/sub", "runner/runner.py", "runner/protocol.py"} <= set(members)
        assert tar.extractfile("extra-ca.crt").read() == b"CERT"  # type: ignore[union-attr]
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert dockerfile == builder.dockerfile(manifest())
    assert members["src/main.py"].mode == 0o644 and members["src/pkg"].isdir()


def test_same_sources_give_the_same_context() -> None:
    builder = ImageBuilder(SandboxSettings())
    sources = {"main.py": b"def apply(x): return x"}
    assert builder.context(sources, manifest()) == builder.context(dict(sources), manifest())


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", "a/../../b.py"])
def test_source_paths_cannot_leave_the_source_directory(path: str) -> None:
    with pytest.raises(BuildFailed):
        ImageBuilder(SandboxSettings()).context({path: b""}, manifest())
