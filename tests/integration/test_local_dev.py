"""`algohost init`, `run` and `test` against the real Docker engine, with no API, Redis or
Vault: the platform's builder and hardened sandbox, driven from a directory.

Each test removes the images its directories produced and checks no container is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from algohost.cli.common import CliContext
from algohost.cli.local import LABEL_LOCAL, read_algorithm
from algohost.cli.main import cli
from algohost.config import load_settings

pytestmark = pytest.mark.integration

SETTINGS = load_settings()


@pytest.fixture
def local(docker_client: Any) -> Iterator[list[Path]]:
    """Directories a test runs; their images are removed after it."""
    made: list[Path] = []
    yield made
    for directory in made:
        algorithm = read_algorithm(directory, SETTINGS.max_upload_bytes)
        # The image, its cached steps and the pytest layer all carry the build's label.
        made_here = docker_client.images.list(
            filters={"label": f"algohost.build={algorithm.build_id}"})
        for image in sorted(made_here, key=lambda i: i.attrs["Created"], reverse=True):
            for tag in image.tags or [image.id]:
                docker_client.images.remove(tag, force=True)
        left = docker_client.containers.list(
            all=True, sparse=True,
            filters={"label": [f"{LABEL_LOCAL}=1", f"algohost.build={algorithm.build_id}"]})
        assert left == []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliContext(SETTINGS))


def write_algorithm(root: Path, name: str, code: str, toml_extra: str = "") -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "algorithm.toml").write_text(
        f'name = "{name}"\nentrypoint = "main:apply"\n{toml_extra}', encoding="utf-8")
    (directory / "main.py").write_text(code, encoding="utf-8")
    return directory


def test_init_run_and_test_a_function_template(tmp_path: Path, local: list[Path]) -> None:
    created = invoke("init", "greeter", "--dir", str(tmp_path))
    assert created.exit_code == 0, created.stderr
    directory = tmp_path / "greeter"
    local.append(directory)

    ran = invoke("run", str(directory), '{"name": "ada"}')
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"greeting": "hello ada"}
    assert "greeting ada" in ran.stderr  # the algorithm's print, as its logs
    assert "cold_start_ms" in ran.stderr

    tested = invoke("test", str(directory))
    assert tested.exit_code == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_test_exits_with_pytests_code_when_a_test_fails(tmp_path: Path,
                                                          local: list[Path]) -> None:
    assert invoke("init", "failing", "--dir", str(tmp_path)).exit_code == 0
    directory = tmp_path / "failing"
    local.append(directory)
    (directory / "tests" / "test_more.py").write_text("def test_no():\n    assert 1 == 2\n")

    tested = invoke("test", str(directory))
    assert tested.exit_code == 1
    assert "1 failed, 1 passed" in tested.stdout


def test_run_times_out_as_the_platform_does(tmp_path: Path, local: list[Path]) -> None:
    code = "import time\n\ndef apply(x):\n    time.sleep(60)\n"
    directory = write_algorithm(tmp_path, "slow", code, "[resources]\ntimeout_s = 1\n")
    local.append(directory)

    ran = invoke("run", str(directory), "{}")
    assert ran.exit_code == 1
    assert "timed_out" in ran.stderr
    assert "did not finish within 1 s" in ran.stderr


def test_a_secret_file_reaches_run_secrets_and_is_masked_in_logs(
        tmp_path: Path, local: list[Path]) -> None:
    code = ("def apply(x):\n"
            "    value = open('/run/secrets/API_TOKEN').read()\n"
            "    print('token is', value)\n"
            "    return {'length': len(value)}\n")
    directory = write_algorithm(tmp_path, "tokenuser", code,
                                '[secrets]\nnames = ["API_TOKEN"]\n')
    local.append(directory)
    secret = tmp_path / "token.txt"
    secret.write_text("s3cr3t-value-42\n", encoding="utf-8")

    ran = invoke("run", str(directory), "{}", "--secret", f"API_TOKEN=@{secret}")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"length": len("s3cr3t-value-42")}
    assert "token is ***" in ran.stderr
    assert "s3cr3t-value-42" not in ran.stdout + ran.stderr


def test_run_ends_a_call_over_its_memory_limit_as_the_platform_does(
        tmp_path: Path, local: list[Path]) -> None:
    code = ("def apply(x):\n    chunks = []\n    while True:\n"
            "        chunks.append(b'\\x01' * (8 * 1024 * 1024))\n")
    directory = write_algorithm(tmp_path, "hog", code, "[resources]\nmemory_mb = 64\n")
    local.append(directory)

    ran = invoke("run", str(directory), "{}")
    assert ran.exit_code == 1
    assert "(oom)" in ran.stderr
    assert "64 MB memory limit" in ran.stderr


def test_run_builds_on_the_default_bridge_where_no_fenced_network_exists(
        tmp_path: Path, local: list[Path]) -> None:
    directory = write_algorithm(tmp_path, "bridged", "def apply(x):\n    return x\n")
    local.append(directory)
    settings = load_settings({"ALGOHOST_BUILDS_NETWORK": "algohost-nonet"})

    ran = CliRunner().invoke(cli, ["run", str(directory), "[1]"], obj=CliContext(settings))
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == [1]
    assert "no network algohost-nonet" in ran.stderr
