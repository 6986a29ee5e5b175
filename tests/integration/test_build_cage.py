"""Builds in a cage, against the real engine: limits, deadline, network, cache per owner.

Nothing here needs a package registry: hostile steps run in the cage directly, and a
slow build is a pip that retries against the container's own loopback.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from algohost.archive import content_hash, make_archive, read_archive
from algohost.config import MiB, SandboxSettings, Settings
from algohost.errors import BuildDiskQuota, BuildFailed
from algohost.manifest import Manifest, manifest_from_dict
from algohost.sandbox.builder import LABEL_BUILD_STEP, ImageBuilder, cache_scope, step_params
from algohost.sandbox.buildplan import Step
from algohost.semver import Bump
from algohost.store.build_leases import BuildLeases
from algohost.store.registry import Registry
from algohost.worker.building import BuildRunner
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.integration

RUN_ID = uuid.uuid4().hex[:8]
HELLO = Path(__file__).resolve().parent.parent / "algorithms" / "hello"


def manifest(**build: Any) -> Manifest:
    return manifest_from_dict({
        "name": "hello", "entrypoint": "main:apply", "python": "3.11",
        "build": {"python_packages": [], "requirements": None, "system_packages": [], **build},
        "resources": {"timeout_s": 30, "memory_mb": 256, "cpus": 1.0, "network": False},
        "secrets": {"names": [], "as_env": False}})


@pytest.fixture(scope="session")
def settings(sandbox_settings: SandboxSettings) -> SandboxSettings:
    return replace(sandbox_settings, build_memory_mb=96, build_cpus=0.5, build_pids=64,
                   build_timeout_s=120)


class Builds:
    """Builds of tests/algorithms/hello for any owner; every image and cache entry is
    removed at the end."""

    def __init__(self, builder: ImageBuilder) -> None:
        self.builder, self.made = builder, set[tuple[str, str]]()

    def hello(self, owner: str, logs: list[str], **build: Any) -> str:
        tag = f"algohost-test/cage-{owner}:{RUN_ID}"
        self.made.add((owner, tag))
        sources = {p.name: p.read_bytes() for p in HELLO.iterdir() if p.is_file()}
        return self.builder.build(f"b_{owner}", tag, sources, manifest(**build), logs.append,
                                  owner=owner)

    def remove(self) -> None:
        for owner, tag in self.made:
            self.builder.remove_image(tag)
            self.builder.remove_cache(owner, "hello")


@pytest.fixture
def builder(settings: SandboxSettings) -> ImageBuilder:
    # Its own client: a step may be silent for longer than the tests' client waits.
    return ImageBuilder(settings)


@pytest.fixture
def builds(settings: SandboxSettings) -> Iterator[Builds]:
    # A whole core, more memory and the default deadline: a venv with pip is slow at
    # half a core, and on a busy host ensurepip alone can take minutes.
    made = Builds(ImageBuilder(replace(settings, build_cpus=1.0, build_memory_mb=512,
                                       build_timeout_s=900)))
    yield made
    made.remove()


def in_cage(builder: ImageBuilder, script: str, scope: str = "") -> tuple[list[str], Any]:
    """Run a Python script as a build step on the base image; its log and its error."""
    logs: list[str] = []
    docker_client = builder.client  # patient: the engine is slow while others build
    base = docker_client.images.get(builder.settings.base_image).id
    step = Step("probe", ("python3", "-c", script))
    labels = {"algohost.managed": "1", "algohost.build": f"b_cage_{RUN_ID}",
              "algohost.cache-scope": f"probe{RUN_ID}"}
    scope = scope or f"probe{uuid.uuid4().hex[:8]}"  # never a cache hit
    error = None
    try:
        image = builder.run_step(base, step, scope, labels, time.monotonic() + 120, logs.append)
        for tagged in docker_client.images.get(image).tags:
            docker_client.images.remove(tagged)
    except BuildFailed as exc:
        error = exc
    return logs, error


LIMITS_PROBE = r"""
import socket
def first(*paths):
    for path in paths:
        try:
            return open(path).read().strip()
        except OSError:
            continue
    return "unreadable"
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
# cgroup v1 paths first, then v2's
print("memory", first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"))
print("pids", first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"))
quota = first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max").split()[0]
period = first("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpu.max").split()[-1]
print("quota", quota, period)
print("caps", status["CapEff"].strip(), "nnp", status["NoNewPrivs"].strip())
print("address", socket.gethostbyname(socket.gethostname()))
"""


def test_a_build_step_runs_with_every_limit_on_the_builds_network(
        builder: ImageBuilder) -> None:
    logs, error = in_cage(builder, LIMITS_PROBE)
    assert error is None, logs
    seen = dict(line.split(" ", 1) for line in logs)
    assert seen["memory"] == str(96 * 1024 * 1024)
    assert seen["pids"] == "64"
    quota, period = map(int, seen["quota"].split())
    assert quota / period == 0.5
    assert seen["caps"] == "0000000000000000 nnp 1"
    network = builder.client.networks.get(builder.settings.builds_network)
    subnet = ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"])
    assert ipaddress.ip_address(seen["address"]) in subnet


FORK_BOMB = r"""
import os, time
forks = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        forks += 1
except OSError as exc:
    print("forks", forks, "errno", exc.errno, flush=True)
    raise SystemExit(3)
"""


def test_a_fork_bomb_in_a_build_step_meets_the_pid_limit(
        builder: ImageBuilder) -> None:
    logs, error = in_cage(builder, FORK_BOMB)
    assert isinstance(error, BuildFailed) and "exited with code 3" in error.message
    forks = next(line for line in logs if line.startswith("forks"))
    assert int(forks.split()[1]) < 64 and forks.endswith("errno 11")  # EAGAIN


def test_a_memory_bomb_in_a_build_step_is_killed_at_the_memory_limit(
        builder: ImageBuilder) -> None:
    logs, error = in_cage(builder, "x = bytearray(512 * 1024 * 1024)")
    assert isinstance(error, BuildFailed) and "memory limit of 96 MB" in error.message


def test_the_operators_docker_proxies_never_reach_a_build_step(
        settings: SandboxSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = "http://operator-proxy.invalid:3128"
    (tmp_path / "config.json").write_text(json.dumps(
        {"proxies": {"default": {"httpProxy": proxy, "httpsProxy": proxy, "noProxy": "x"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # as the operator's ~/.docker
    builder = ImageBuilder(settings)
    assert builder.client.api._general_configs.get("proxies")  # docker-py did read them
    logs, error = in_cage(builder, "import os; print(sorted(k for k in os.environ "
                                   "if 'proxy' in k.lower()))")
    assert error is None and logs == ["[]"]


def test_two_owners_never_share_a_cached_layer_or_see_each_others_cache(
        builds: Builds) -> None:
    builder = builds.builder
    alice, bob = f"alice{RUN_ID}", f"bob{RUN_ID}"
    first_logs: list[str] = []
    again_logs: list[str] = []
    their_logs: list[str] = []
    first = builds.hello(alice, first_logs)
    again = builds.hello(alice, again_logs)
    theirs = builds.hello(bob, their_logs)
    assert "Using cache" not in "\n".join(first_logs)
    assert again_logs.count(" ---> Using cache") == 2  # the venv and the source
    assert "Using cache" not in "\n".join(their_logs)
    base = {layer["Id"] for layer in builder.client.images.get(
        builder.settings.base_image).history()}

    def ancestry(image_id: str) -> set[str]:
        return {layer["Id"] for layer in builder.client.images.get(image_id).history()
                if layer["Id"] != "<missing>"} - base

    assert ancestry(first) - {first} <= ancestry(again)  # alice reused her own layers
    assert not ancestry(first) & ancestry(theirs)  # bob has none of them
    scope = cache_scope(bob, "hello")
    assert all(scope in tag for image in builder.client.images.list(
        filters={"label": f"algohost.cache-scope={scope}"}) for tag in image.tags
        if tag.startswith("algohost-cache/"))


def test_a_hostile_package_string_reaches_pip_as_data_never_a_shell(builds: Builds) -> None:
    logs: list[str] = []
    hostile = "x; echo INJECTED-$((6*7)) >&2"
    with pytest.raises(BuildFailed) as failed:
        builds.hello(f"mallory{RUN_ID}", logs, python_packages=[hostile])
    assert "pip install" in failed.value.message
    text = "\n".join(logs)
    assert "Invalid marker: 'echo INJECTED-$((6*7)) >&2'" in text  # pip read it, as data
    assert "INJECTED-42" not in text


@pytest.fixture
def registry(redis_client: Any) -> Iterator[Registry]:
    raw = redis.Redis.from_url(TEST_REDIS_URL)  # sources are bytes
    yield Registry(redis_client, raw)
    raw.close()


SLOW_REQUIREMENTS = b"""\
# pip retries a refused index with a growing backoff: seconds, never a result.
--index-url http://127.0.0.1:9/simple
nothing-here
"""


def test_a_build_past_its_deadline_is_killed_and_recorded_as_build_timeout(
        registry: Registry, settings: SandboxSettings, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_bytes((HELLO / "main.py").read_bytes())
    (tmp_path / "requirements.txt").write_bytes(SLOW_REQUIREMENTS)
    owner = f"slow{RUN_ID}"
    source = make_archive(tmp_path)
    m = manifest(requirements="requirements.txt")
    digest = content_hash(read_archive(source, 10**7), m.to_dict())
    build, _ = registry.publish(owner, "hello", digest, m, source, Bump.PATCH)
    timed = replace(settings, build_timeout_s=4)
    builder = ImageBuilder(timed)
    try:
        BuildRunner(registry, builder, Settings(sandbox=timed),
                    BuildLeases(registry.redis)).run(build.id)
    finally:
        builder.remove_cache(owner, "hello")
    record = registry.get_build(build.id)
    assert record.status == "failed" and record.reason == "build_timeout"
    logs = registry.logs(build.id)
    assert "Step 1/" in logs  # the log so far is kept
    assert "did not finish within 4 s" in logs and "did not finish within 4 s" in str(record.error)
    assert not builder.client.containers.list(
        all=True, filters={"label": f"{LABEL_BUILD_STEP}={build.id}"}, sparse=True)


DISK_BOMB = r"""
import time
with open("/tmp/bomb", "wb") as out:  # /tmp is part of the step's layer, not a tmpfs
    for mb in range(1, 61):
        out.write(b"x" * 1024 * 1024)
        out.flush()
        if mb % 10 == 0:
            print("wrote", mb, "MB", flush=True)
time.sleep(600)  # only the quota's kill (or the deadline) ends it
"""


@pytest.fixture
def small_disk(settings: SandboxSettings) -> SandboxSettings:
    return replace(settings, build_disk_mb=20)


def test_a_build_step_writing_past_the_disk_quota_is_killed_and_nothing_of_it_kept(
        small_disk: SandboxSettings) -> None:
    builder = ImageBuilder(small_disk)
    scope = f"bomb{uuid.uuid4().hex[:8]}"
    logs, error = in_cage(builder, DISK_BOMB, scope)
    assert isinstance(error, BuildDiskQuota), (error, logs)
    assert error.code == "build_disk_quota"
    assert "went over the build disk quota of 20 MB" in error.message
    assert "wrote 10 MB" in logs  # the log so far
    assert not builder.client.images.list(f"algohost-cache/{scope}")  # nothing committed
    assert not builder.client.containers.list(
        all=True, filters={"label": f"{LABEL_BUILD_STEP}=b_cage_{RUN_ID}"}, sparse=True)


def publish(registry: Registry, owner: str, source_dir: Path) -> str:
    for name in ("main.py", "algorithm.toml"):
        (source_dir / name).write_bytes((HELLO / name).read_bytes())
    m = manifest()
    source = make_archive(source_dir)
    digest = content_hash(read_archive(source, 10**8), m.to_dict())
    build, _ = registry.publish(owner, "hello", digest, m, source, Bump.PATCH)
    return build.id


def test_a_build_over_the_disk_quota_fails_as_build_disk_quota_and_one_under_it_succeeds(
        registry: Registry, small_disk: SandboxSettings, tmp_path: Path) -> None:
    owner = f"disk{RUN_ID}"
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    # A tenant's files reach the image too: a 30 MB "model" next to the code.
    (tmp_path / "large" / "model.bin").write_bytes(bytes(30 * MiB))
    small = publish(registry, owner, tmp_path / "small")
    large = publish(registry, owner, tmp_path / "large")
    builder = ImageBuilder(small_disk)
    runner = BuildRunner(registry, builder, Settings(sandbox=small_disk),
                         BuildLeases(registry.redis))
    try:
        runner.run(small)
        runner.run(large)
        assert registry.get_build(small).status == "succeeded"
        record = registry.get_build(large)
        assert record.status == "failed" and record.reason == "build_disk_quota"
        assert "build disk quota of 20 MB" in str(record.error)
        logs = registry.logs(large).splitlines()
        assert "Step 2/2 : add the source to /opt/algorithm" in logs  # the log so far
        assert logs[-1].startswith("build failed: `add the source")
        assert "build disk quota of 20 MB" in logs[-1]
        base = builder.client.images.get(small_disk.base_image).attrs["Size"]
        kept = builder.client.images.list(
            filters={"label": f"algohost.cache-scope={cache_scope(owner, 'hello')}"})
        assert kept and all(image.attrs["Size"] - base < 20 * MiB for image in kept)
        assert not builder.client.containers.list(
            all=True, filters={"label": f"{LABEL_BUILD_STEP}={large}"}, sparse=True)
    finally:
        builder.remove_image(registry.get_build(small).image)
        builder.remove_cache(owner, "hello")


def test_a_build_whose_log_is_full_still_ends_with_the_line_naming_the_quota(
        registry: Registry, small_disk: SandboxSettings, tmp_path: Path) -> None:
    owner = f"chatty{RUN_ID}"
    (tmp_path / "model.bin").write_bytes(bytes(30 * MiB))
    large = publish(registry, owner, tmp_path)
    registry.append_log(large, "pip says a lot\n" * 40_000)  # 600 KB: past the log's cap
    builder = ImageBuilder(small_disk)
    try:
        BuildRunner(registry, builder, Settings(sandbox=small_disk),
                    BuildLeases(registry.redis)).run(large)
    finally:
        builder.remove_cache(owner, "hello")
    assert registry.get_build(large).reason == "build_disk_quota"
    logs = registry.logs(large)
    assert "Step 1/" not in logs  # the steps' lines were past the cap
    assert logs.splitlines()[-1].startswith("build failed: `add the source")


CHATTY = r"""
import sys
line = "y" * 99 + "\n"
for number in range(400_000):  # 40 MB
    sys.stdout.write(f"{number} {line}")
sys.stdout.flush()
"""


def test_a_step_that_prints_without_end_keeps_a_bounded_log_file_and_still_succeeds(
        builder: ImageBuilder) -> None:
    logs, error = in_cage(builder, CHATTY)
    # Read through the rotations to the step's end; lines rotated away before they
    # were read are lost, past the head that the build's log keeps anyway.
    assert error is None and logs, logs[:3]
    # The same cage, kept after it exits: its output file beside the engine's layers.
    client, settings = builder.client, builder.settings
    params = step_params(Step("chatty", ("python3", "-c", CHATTY)), settings,
                         f"b_chatty_{RUN_ID}")
    container = client.containers.create(settings.base_image, **params)
    try:
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0
        container.reload()
        log_path = Path(container.attrs["LogPath"])
        files = [log_path, *log_path.parent.glob(log_path.name + ".*")]
        written = sum(path.stat().st_size for path in files if path.exists())
    finally:
        container.remove(force=True)
    # 40 MB printed, about 60 MB as JSON lines; two files of 8 MB kept.
    assert 0 < written <= 2 * 8 * MiB + 64 * 1024


def test_an_image_over_the_quota_fails_even_when_its_layers_come_from_the_cache(
        small_disk: SandboxSettings, tmp_path: Path) -> None:
    owner = f"cached{RUN_ID}"
    (tmp_path / "model.bin").write_bytes(bytes(30 * MiB))
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    files.update({p.name: p.read_bytes() for p in HELLO.iterdir() if p.is_file()})
    larger = ImageBuilder(replace(small_disk, build_disk_mb=100))
    tag = f"algohost-test/cached-{owner}:{RUN_ID}"
    try:
        larger.build(f"b_{owner}", tag, files, manifest(), lambda line: None, owner=owner)
        logs: list[str] = []
        with pytest.raises(BuildDiskQuota) as failed:  # the operator lowered the quota since
            ImageBuilder(small_disk).build(f"b_{owner}2", tag + "x", files, manifest(),
                                           logs.append, owner=owner)
    finally:
        larger.remove_image(tag)
        larger.remove_cache(owner, "hello")
    assert logs.count(" ---> Using cache") == 2
    assert "the image adds 30 MB to the base image" in failed.value.message
    assert "build disk quota of 20 MB" in failed.value.message
