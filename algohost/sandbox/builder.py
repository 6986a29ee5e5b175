"""Builds one algorithm's image: each step of its plan in a caged container, then committed.

Build steps run tenant code (a setup.py, a requirements file's URLs), so each runs
like a call does: capabilities dropped (apt keeps a few), no-new-privileges, memory,
CPU and pid limits, on the builds network, and the whole build under one deadline.
Each step's writable layer is watched against the disk quota, and so is what the whole
image adds to the base image.
Cached layers are tagged per owner and algorithm: two owners never share one, nor
see a "Using cache" line caused by the other. Secret values never reach a build.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors
import requests.exceptions

from algohost.config import MiB, SandboxSettings
from algohost.errors import BuildDiskQuota, BuildFailed, BuildTimedOut
from algohost.manifest import Manifest
from algohost.sandbox.buildplan import ImageConfig, Step, image_config, plan
from algohost.sandbox.diskwatch import DiskWatch
from algohost.sandbox.docker import (
    LABEL_BUILD,
    LABEL_MANAGED,
    docker_client,
    network_params,
    remove_container,
    translate_docker_errors,
)

LABEL_CACHE_SCOPE = "algohost.cache-scope"
# Step containers carry this, not algohost.managed: a sweep of managed call containers
# must not remove a build's container under it. `algohost prune` knows both.
LABEL_BUILD_STEP = "algohost.build-step"
CACHE_REPOSITORY = "algohost-cache"
# A step's output goes to a file beside the engine's layers: it is read as it comes,
# and only its head is kept (the registry's log cap), so the file is rotated, not grown.
STEP_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "8m", "max-file": "2"}}
CLIENT_MARGIN_S = 60  # the engine's longest silence is a step's, which the deadline ends
EXIT_WAIT_S = 30


def cache_scope(owner: str, name: str) -> str:
    """The cache's partition: one per owner and algorithm."""
    return hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()[:16]


def cache_tag(scope: str, parent_id: str, step: Step) -> str:
    key = hashlib.sha256(json.dumps([scope, parent_id, step.fingerprint()]).encode())
    return f"{CACHE_REPOSITORY}/{scope}:{key.hexdigest()[:32]}"


def step_params(step: Step, settings: SandboxSettings, build_id: str) -> dict[str, Any]:
    """The create parameters of a build step's container: the build cage."""
    memory = f"{settings.build_memory_mb}m"
    return {
        "command": list(step.argv) or ["true"],
        # "0" overrides the managed label every algohost image passes on to its containers.
        "labels": {LABEL_BUILD_STEP: build_id, LABEL_MANAGED: "0"},
        **network_params(settings.builds_network, settings),
        "cap_drop": ["ALL"],
        "cap_add": list(step.capabilities),
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap
        "nano_cpus": int(settings.build_cpus * 1e9),
        "pids_limit": settings.build_pids,
        "log_config": STEP_LOG_CONFIG,
        # The operator's ~/.docker/config.json proxies are theirs, not the tenant's.
        "use_config_proxy": False,
        **({"runtime": settings.runtime} if settings.runtime else {}),
    }


class ImageBuilder:
    def __init__(self, settings: SandboxSettings, client: Any = None,
                 fence: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._client = client
        self._fence = fence  # asked before every step container, as DockerSandbox asks

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client(
                self.settings, timeout_s=self.settings.build_timeout_s + CLIENT_MARGIN_S)
        return self._client

    def build(
        self,
        build_id: str,
        tag: str,
        source_files: Mapping[str, bytes],
        manifest: Manifest,
        on_log: Callable[[str], None],
        *,
        owner: str,
    ) -> str:
        """Build and tag the image, streaming its log lines; returns the image id.

        Past `build_timeout_s` the running step is killed and BuildTimedOut raised; past
        `build_disk_mb`, BuildDiskQuota."""
        deadline = time.monotonic() + self.settings.build_timeout_s
        steps = plan(manifest, source_files, self.settings)
        scope = cache_scope(owner, manifest.name)
        labels = {LABEL_MANAGED: "1", LABEL_BUILD: build_id, LABEL_CACHE_SCOPE: scope}
        config = image_config(manifest, labels)
        with translate_docker_errors(f"building {tag}", BuildFailed):
            base = self.client.images.get(self.settings.base_image)
            parent, base_size = base.id, int(base.attrs.get("Size") or 0)
            for number, step in enumerate(steps, 1):
                on_log(f"Step {number}/{len(steps)} : {step.title}")
                grown = self._grown(parent, base_size)
                parent = self.run_step(parent, step, scope, labels, deadline, on_log,
                                       grown=grown)
                on_log(f" ---> {_short(parent)}")
            self._grown(parent, base_size)  # a cached last layer, made under a larger quota
            image_id = self._finish(parent, config, tag)
        on_log(f"Successfully built {_short(image_id)}")
        on_log(f"Successfully tagged {tag}")
        return image_id

    def run_step(self, parent: str, step: Step, scope: str, labels: Mapping[str, str],
                 deadline: float, on_log: Callable[[str], None], *, grown: int = 0) -> str:
        """One step on `parent` (an image id), from the cache or run in the cage and
        committed; returns the new image id. `deadline` is a time.monotonic() value;
        `grown` is what earlier steps added to the base image, in bytes: the step may
        write what is left of the disk quota."""
        tag = cache_tag(scope, parent, step)
        try:
            cached = self.client.images.get(tag)
            on_log(" ---> Using cache")
            return str(cached.id)
        except docker.errors.ImageNotFound:
            pass
        repository, _, key = tag.rpartition(":")
        if self._fence is not None:
            self._fence()
        params = step_params(step, self.settings, labels[LABEL_BUILD])
        container = self._create(parent, params, deadline)
        watch = self._watch(container, grown)
        try:
            if step.files:
                container.put_archive("/", step.archive())
            if step.argv:
                self._run(container, step, deadline, on_log, watch)
            if watch is not None and watch.check() is not None:  # the step's last writes
                raise self._over_quota(step, watch)
            image = container.commit(repository=repository, tag=key, conf={"Labels": labels})
            return str(image.id)
        finally:
            remove_container(container)

    def _create(self, image: str, params: dict[str, Any], deadline: float) -> Any:
        if time.monotonic() >= deadline:
            raise self._timed_out()
        try:
            return self.client.containers.create(image, **params)
        except docker.errors.NotFound as exc:
            if params.get("network") and "network" in str(exc.explanation or exc):
                raise BuildFailed(f"the builds network {params['network']} does not exist: "
                                  "run `algohost egress install` (or `dev up`)") from exc
            raise

    def _run(self, container: Any, step: Step, deadline: float,
             on_log: Callable[[str], None], watch: DiskWatch | None) -> None:
        killed = threading.Event()

        def kill(*_: object) -> None:
            killed.set()
            try:
                container.kill()
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                pass  # it finished meanwhile

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), kill)
        timer.daemon = True
        timer.start()
        if watch is not None:
            watch.start(kill)
        try:
            container.start()
            _stream(container, on_log)
            code = container.wait(timeout=EXIT_WAIT_S).get("StatusCode")
        finally:
            timer.cancel()
            if watch is not None:
                watch.close()
        if watch is not None and watch.over is not None:
            raise self._over_quota(step, watch)
        if killed.is_set():
            raise self._timed_out()
        if code != 0:
            container.reload()
            if container.attrs.get("State", {}).get("OOMKilled"):
                raise BuildFailed(f"`{step.title}` went over the build memory limit of "
                                  f"{self.settings.build_memory_mb} MB")
            raise BuildFailed(f"`{step.title}` exited with code {code}")

    def _watch(self, container: Any, grown: int) -> DiskWatch | None:
        """A watch of the step's writable layer against what is left of the quota; None
        when there is no quota."""
        quota = self.settings.build_disk_mb * MiB
        if not quota:
            return None

        def measure() -> int | None:
            try:  # the engine walks the layer; listing by id is docker-py's way to ask it
                found = self.client.api.containers(all=True, size=True,
                                                   filters={"id": container.id})
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                return None
            return int(found[0].get("SizeRw") or 0) if found else None

        return DiskWatch(measure, quota - grown)

    def _grown(self, image_id: str, base_size: int) -> int:
        """What the image adds to the base image, in bytes; raises past the quota (a
        cached layer made when the quota was larger)."""
        quota = self.settings.build_disk_mb * MiB
        if not quota:
            return 0
        grown = int(self.client.images.get(image_id).attrs.get("Size") or 0) - base_size
        if grown > quota:
            raise BuildDiskQuota(f"the image adds {_mb(grown)} MB to the base image, over the "
                                 f"build disk quota of {self.settings.build_disk_mb} MB")
        return max(0, grown)

    def _over_quota(self, step: Step, watch: DiskWatch) -> BuildDiskQuota:
        grown = self.settings.build_disk_mb * MiB - watch.limit_bytes
        earlier = f" on top of {_mb(grown)} MB from earlier steps" if grown else ""
        return BuildDiskQuota(f"`{step.title}` went over the build disk quota of "
                              f"{self.settings.build_disk_mb} MB: it wrote {_mb(watch.over or 0)}"
                              f" MB{earlier}")

    def _timed_out(self) -> BuildTimedOut:
        return BuildTimedOut(f"the build did not finish within {self.settings.build_timeout_s} s")

    def _finish(self, parent: str, config: ImageConfig, tag: str) -> str:
        """The image's own configuration, on an empty layer over the last step."""
        container = self.client.containers.create(
            parent, command=config.cmd, environment=config.env, working_dir=config.workdir,
            labels={LABEL_BUILD_STEP: config.labels[LABEL_BUILD], LABEL_MANAGED: "0"},
            network_mode="none",
            use_config_proxy=False)
        try:
            repository, _, name = tag.rpartition(":")
            image = container.commit(repository=repository, tag=name,
                                     conf={"Labels": config.labels})
            return str(image.id)
        finally:
            remove_container(container)

    def remove_image(self, tag: str) -> bool:
        """Remove an image by tag; False if it did not exist."""
        with translate_docker_errors(f"removing image {tag}"):
            try:
                self.client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                return False
        return True

    def remove_cache(self, owner: str, name: str) -> int:
        """Untag an algorithm's cached layers (images still using them keep them)."""
        scope = cache_scope(owner, name)
        removed = 0
        with translate_docker_errors(f"removing the build cache of {owner}/{name}"):
            for image in self.client.images.list(f"{CACHE_REPOSITORY}/{scope}"):
                for tag in image.tags:
                    try:
                        self.client.images.remove(tag)
                        removed += 1
                    except docker.errors.ImageNotFound:
                        pass
        return removed


def _stream(container: Any, on_log: Callable[[str], None]) -> None:
    pending = b""
    for chunk in container.logs(stream=True, follow=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text.strip():
                on_log(text)
    if pending.strip():
        on_log(pending.decode("utf-8", "replace").rstrip())


def _mb(size: int) -> str:
    return f"{size / MiB:.0f}" if size >= MiB else f"{size / MiB:.1f}"


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
