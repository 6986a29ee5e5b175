"""Turn a published source into an image: one build, its logs streamed to the registry.

Builds run on their own queue so a slow one never blocks calls; a failed build
keeps its logs and never becomes @latest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from algohost.archive import read_archive
from algohost.clock import now_iso
from algohost.config import Settings
from algohost.errors import AlgohostError
from algohost.manifest import Manifest
from algohost.sandbox.base import ContainerSpec
from algohost.store.build_leases import BuildLeases
from algohost.store.registry import BuildStatus, Registry

log = logging.getLogger(__name__)


class Builder(Protocol):
    def build(self, build_id: str, tag: str, source_files: dict[str, bytes],
              manifest: Manifest, on_log: Any, *, owner: str) -> str: ...


class BuildRunner:
    def __init__(self, registry: Registry, builder: Builder, settings: Settings,
                 leases: BuildLeases,
                 on_succeeded: Sequence[Callable[[str], None]] = ()) -> None:
        self.registry, self.builder, self.settings = registry, builder, settings
        self.leases = leases
        self.on_succeeded = list(on_succeeded)  # each told the id of a build that succeeded

    def run(self, build_id: str) -> None:
        lease_s = self.settings.lease_s
        attempt = self.leases.claim(build_id, time.time() + lease_s, now_iso())
        if not attempt:
            log.info("build %s is %s; nothing to do", build_id,
                     self.registry.get_build(build_id).status)
            return
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(build_id, done),
                                   name=f"lease-{build_id}", daemon=True)
        renewer.start()
        try:
            self._build(build_id)
        finally:
            done.set()
            renewer.join()
            self.leases.release(build_id)

    def _renew(self, build_id: str, done: threading.Event) -> None:
        """Keep the build's lease while it builds; a worker killed mid-build stops renewing
        and the reaper gives the build to another."""
        while not done.wait(self.settings.lease_s / 3):
            try:
                self.leases.renew(build_id, time.time() + self.settings.lease_s)
            except AlgohostError as exc:
                log.warning("could not renew the lease of build %s: %s", build_id, exc.message)

    def _build(self, build_id: str) -> None:
        build = self.registry.get_build(build_id)
        try:
            files = read_archive(self.registry.source(build_id), self.settings.max_upload_bytes)
            image_id = self.builder.build(build_id, build.image, files, build.manifest,
                                          lambda line: self._log(build_id, line),
                                          owner=build.owner)
        except AlgohostError as exc:
            self._failed(build_id, exc.message, exc.code)
            return
        except Exception as exc:  # the build worker must survive and say why
            log.exception("build %s failed", build_id)
            self._failed(build_id, str(exc), "build_failed")
            return
        self.registry.mark_succeeded(build_id, image_id=image_id, finished_at=now_iso())
        for hook in self.on_succeeded:
            try:
                hook(build_id)
            except Exception:  # the build succeeded whatever a hook does
                log.exception("a hook after build %s failed", build_id)

    def _failed(self, build_id: str, message: str, reason: str) -> None:
        # The log streamed so far stays: it is what says where a build stopped.
        self.registry.append_log(build_id, f"\nbuild failed: {message}\n", last=True)
        self.registry.update_build(build_id, status=BuildStatus.FAILED.value, error=message,
                                   reason=reason, finished_at=now_iso())

    def _log(self, build_id: str, line: str) -> None:
        self.registry.append_log(build_id, line if line.endswith("\n") else line + "\n")


class ImageRestorer:
    """Builds a published version's image again where it is missing.

    Images live on each worker's engine and there is no registry to pull from:
    a new worker host, or a prune, must not turn a published version into
    failing calls. The source is kept in the store and the build is
    deterministic, so the same content gives the same image."""

    def __init__(self, registry: Registry, builder: Builder, settings: Settings) -> None:
        self.registry, self.builder, self.settings = registry, builder, settings
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def restore(self, spec: ContainerSpec) -> None:
        with self._guard:
            lock = self._locks.setdefault(spec.build_id, threading.Lock())
        with lock:  # concurrent calls of one build wait for a single rebuild
            build = self.registry.get_build(spec.build_id)
            log.warning("image %s of %s is missing here; building it again",
                        build.image, build.ref)
            files = read_archive(self.registry.source(build.id),
                                 self.settings.max_upload_bytes)
            self.builder.build(build.id, build.image, files, build.manifest,
                               lambda line: None, owner=build.owner)


def reap_expired_builds(leases: BuildLeases, enqueue: Callable[[str], None],
                        max_attempts: int, now: float | None = None) -> list[str]:
    """Builds whose worker stopped renewing go back to the queue; past `max_attempts`
    they fail with a reason instead of staying `building` forever."""
    error = (f"the worker building it was lost {max_attempts} times "
             "(killed, or its host went away); publish again to retry")
    reaped = []
    for build_id, moved in leases.reap(max_attempts, now_iso(), error, now):
        if moved == "queued":
            enqueue(build_id)
        else:
            log.warning("build %s failed: %s", build_id, error)
        reaped.append(build_id)
    return reaped
