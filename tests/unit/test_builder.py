"""The build plan and the build cage's parameters, without a Docker engine."""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed, InvalidManifest
from algohost.manifest import Manifest, manifest_from_dict
from algohost.sandbox.builder import cache_scope, cache_tag, step_params
from algohost.sandbox.buildplan import (
    APT_SCRIPT,
    REQUIREMENTS_SCRIPT,
    Step,
    image_config,
    plan,
)

SOURCES = {"main.py": b"def apply(x): return x"}


def manifest(**build: Any) -> Manifest:
    """A manifest as stored; not validated again, so hostile values reach the plan."""
    return manifest_from_dict({
        "name": "hello",
        "entrypoint": "main:apply",
        "python": "3.11",
        "build": {"python_packages": [], "requirements": None, "system_packages": [], **build},
        "resources": {"timeout_s": 30, "memory_mb": 512, "cpus": 1.0, "network": False},
        "secrets": {"names": [], "as_env": False},
    })


def steps_of(m: Manifest, sources: dict[str, bytes] = SOURCES,
             settings: SandboxSettings | None = None) -> list[Step]:
    return plan(m, sources, settings or SandboxSettings())


def test_a_minimal_plan_makes_a_venv_without_pip_then_adds_the_source() -> None:
    venv, source = steps_of(manifest())
    assert venv.argv == ("python3", "-m", "venv", "--without-pip", "/opt/algo")
    assert not source.argv
    paths = [path for path, _ in source.files]
    assert paths == ["/opt/algohost/algohost_runtime.py", "/opt/algohost/protocol.py",
                     "/opt/algohost/runner.py", "/opt/algorithm/main.py"]


def test_system_packages_come_first_as_arguments_of_a_fixed_script() -> None:
    apt, *_ = steps_of(manifest(system_packages=["libpq-dev", "gcc"]))
    assert apt.argv == ("/bin/sh", "-c", APT_SCRIPT, "apt", "libpq-dev", "gcc")
    assert '-- "$@"' in APT_SCRIPT and "rm -rf /var/lib/apt/lists/*" in APT_SCRIPT
    # dpkg and apt's _apt sandbox need these; nothing like NET_RAW, MKNOD or SYS_*.
    assert set(apt.capabilities) == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                                     "SETGID", "SETUID"}


def test_python_packages_are_pip_arguments_after_the_end_of_options() -> None:
    _, pip, _ = steps_of(manifest(python_packages=["numpy==2.1.*", "x @ https://e.org/x.tgz"]))
    assert pip.argv[-3:] == ("--", "numpy==2.1.*", "x @ https://e.org/x.tgz")
    assert pip.argv[0] == "/opt/algo/bin/pip" and not pip.capabilities


def test_the_requirements_file_is_added_and_removed_in_its_own_step() -> None:
    sources = {**SOURCES, "reqs/base.txt": b"requests\n"}
    _, requirements, source = steps_of(manifest(requirements="reqs/base.txt"), sources)
    assert requirements.files == (("/tmp/algohost-requirements.txt", b"requests\n"),)
    assert requirements.argv[:4] == ("/bin/sh", "-c", REQUIREMENTS_SCRIPT, "pip")
    assert "rm -f /tmp/algohost-requirements.txt" in REQUIREMENTS_SCRIPT
    assert "/opt/algorithm/reqs/base.txt" in dict(source.files)


def test_a_missing_requirements_file_fails_the_build() -> None:
    with pytest.raises(BuildFailed):
        steps_of(manifest(requirements="nope.txt"))


def test_the_extra_ca_bundle_is_added_and_trusted_by_pip(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"CERT")
    settings = SandboxSettings(extra_ca_bundle=str(ca))
    _, bundle, pip, _ = steps_of(manifest(python_packages=["requests"]), settings=settings)
    assert bundle.files == (("/etc/algohost/extra-ca.crt", b"CERT"),)
    assert pip.argv[:4] == ("env", "PIP_CERT=/etc/algohost/extra-ca.crt",
                            "SSL_CERT_FILE=/etc/algohost/extra-ca.crt",
                            "REQUESTS_CA_BUNDLE=/etc/algohost/extra-ca.crt")


HOSTILE = ["x; touch /tmp/pwned", "$(touch /tmp/pwned)", "`id`", "x' && id && '",
           "x\nRUN id", "x\r\nid", "x\x00y", "x\x1b[2J", "--index-url=http://evil", "-e ."]


@pytest.mark.parametrize("package", HOSTILE)
def test_a_hostile_python_package_is_one_argument_or_refused(package: str) -> None:
    try:
        steps = steps_of(manifest(python_packages=[package]))
    except InvalidManifest:
        assert package[0] in "-$`" or any(ord(c) < 32 for c in package)
        return
    pip = steps[1]
    assert pip.argv[-2:] == ("--", package)  # exactly one argv element, after the options
    assert all(package not in part for part in pip.argv[:-1])


@pytest.mark.parametrize("package", HOSTILE + ["libpq-dev; id", "libpq-dev\n"])
def test_a_hostile_system_package_is_refused_before_any_container(package: str) -> None:
    with pytest.raises(InvalidManifest):
        steps_of(manifest(system_packages=[package]))


def test_a_shell_sees_system_packages_as_data() -> None:
    # The fixed script, run by a real shell with apt-get replaced by echo: each
    # package arrives as one word, nothing in it is executed.
    script = APT_SCRIPT.replace("apt-get", "echo").replace("rm -rf", "echo")
    argv = ["/bin/sh", "-c", script, "apt", "a$(echo X)", "b;echo Y", "c d"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "install -y --no-install-recommends -- a$(echo X) b;echo Y c d" in done.stdout
    assert "\nX" not in done.stdout and "\nY" not in done.stdout


@pytest.mark.parametrize("build", [
    {"system_packages": ["y && reboot"]},
    {"system_packages": ["libpq-dev\nRUN curl evil"]},
    {"python_packages": ["numpy\nRUN curl evil"]},
    {"python_packages": ["numpy\r"]},
    {"python_packages": ["--index-url=http://evil"]},
])
def test_a_package_string_that_could_break_out_of_its_line_is_refused(build: Any) -> None:
    with pytest.raises(InvalidManifest):
        steps_of(manifest(**build))


@pytest.mark.parametrize("entrypoint", ["main", "main:", "main:apply; rm", "../x:apply", "",
                                        "main:apply\n", "main:apply\nRUN id"])
def test_a_malformed_entrypoint_is_refused(entrypoint: str) -> None:
    with pytest.raises(InvalidManifest):
        image_config(replace(manifest(), entrypoint=entrypoint), {})


def test_the_image_config_is_structured_not_text() -> None:
    config = image_config(manifest(), {"algohost.build": "b_1"})
    assert config.cmd == ["/opt/algo/bin/python", "-u", "/opt/algohost/runner.py"]
    assert config.env["ALGOHOST_ENTRYPOINT"] == "main:apply"
    assert config.labels == {"algohost.build": "b_1", "algohost.algorithm": "hello"}


def test_the_source_archive_holds_files_and_the_directories_it_makes() -> None:
    _, source = steps_of(manifest(), {"main.py": b"x", "pkg/sub/m.py": b""})
    with tarfile.open(fileobj=io.BytesIO(source.archive())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"opt/algorithm", "opt/algorithm/pkg", "opt/algorithm/pkg/sub"} <= set(members)
    assert "opt" not in members  # the base image owns /opt
    assert members["opt/algorithm/main.py"].mode == 0o644 and members["opt/algorithm"].isdir()


def test_same_sources_give_the_same_archive_and_fingerprint() -> None:
    first, second = steps_of(manifest())[-1], steps_of(manifest(), dict(SOURCES))[-1]
    assert first.archive() == second.archive()
    assert first.fingerprint() == second.fingerprint()


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", "a/../../b.py"])
def test_source_paths_cannot_leave_the_source_directory(path: str) -> None:
    with pytest.raises(BuildFailed):
        steps_of(manifest(), {path: b""})


def test_every_step_runs_in_the_cage() -> None:
    settings = SandboxSettings(build_memory_mb=700, build_cpus=1.5, build_pids=99)
    for step in steps_of(manifest(python_packages=["six"], system_packages=["gcc"])):
        params = step_params(step, settings, "b_1")
        assert params["network"] == "algohost-builds" and "network_mode" not in params
        assert params["mem_limit"] == params["memswap_limit"] == "700m"
        assert params["nano_cpus"] == 1_500_000_000 and params["pids_limit"] == 99
        assert params["cap_drop"] == ["ALL"] and params["cap_add"] == list(step.capabilities)
        assert params["security_opt"] == ["no-new-privileges"]
        assert params["use_config_proxy"] is False
        # Its output file is rotated: at most two files of 8 MB beside the engine's layers.
        assert params["log_config"] == {"type": "json-file",
                                        "config": {"max-size": "8m", "max-file": "2"}}


def test_the_cache_is_partitioned_by_owner_and_algorithm() -> None:
    step = steps_of(manifest())[0]
    tags = {cache_tag(cache_scope(owner, name), "sha256:base", step)
            for owner, name in [("alice", "hello"), ("bob", "hello"), ("alice", "other")]}
    assert len(tags) == 3
    again = cache_tag(cache_scope("alice", "hello"), "sha256:base", steps_of(manifest())[0])
    assert again in tags
