"""The registry: algorithms, their immutable builds and semantic versions.

A build is keyed by a content hash of source + manifest; publishing the same
content again returns the existing build. Versions are assigned under a
per-algorithm lock so two concurrent publishes never get the same number.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from algohost import semver
from algohost.clock import now_iso
from algohost.errors import (
    AlgorithmNotFound,
    BuildNotFound,
    BuildNotReady,
    LimitReached,
    VersionNotFound,
)
from algohost.manifest import Manifest, manifest_from_dict
from algohost.names import VERSION_RANGE, AlgorithmRef
from algohost.notebooks import Parameter
from algohost.store import PREFIX, RecordFields, encode_fields, translate_errors

MAX_BUILD_LOG_BYTES = 512 * 1024
MAX_LAST_LINE_BYTES = 4096
PRIVATE, PUBLIC = "private", "public"


class BuildStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DELETED = "deleted"


def image_tag(owner: str, name: str, content_hash: str) -> str:
    return f"algohost/{owner}/{name}:{content_hash[:16]}"


@dataclass(slots=True)
class BuildRecord:
    """One immutable build of an algorithm, as stored: a Redis hash of JSON text fields.

    The manifest is stored as its dict and read back as a `Manifest`; fields this code
    does not know are skipped, missing ones take their defaults."""

    id: str
    owner: str
    name: str
    version: str
    status: BuildStatus
    manifest: Manifest
    ref: str = ""  # owner/name@version
    content_hash: str = ""
    image: str = ""  # the tag
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    reason: str | None = None  # why it failed: build_failed, build_timeout, build_disk_quota, ...
    image_id: str | None = None  # the engine's id of the image, once built
    deleted_at: str | None = None
    attempts: int = 0  # builds started, counted by its lease (store/build_leases.py)
    source_hash: str = ""  # of the source and manifest as sent (before models are pinned)
    local_hash: str | None = None  # what `algohost run` last passed with, as the publish said
    git_commit: str | None = None  # where the source came from, as the publish said
    git_ref: str | None = None

    @property
    def matches_local(self) -> bool | None:
        """Did the platform build what ran locally? None: no local run was reported."""
        if self.local_hash is None:
            return None
        return self.local_hash == (self.source_hash or self.content_hash)
    # Hidden from ranges and @latest; an exact reference still calls it.
    yanked: bool = False
    yanked_at: str | None = None
    # What each call by another owner pays the author, in millionths of the currency
    # unit; set by the manifest, so fixed for this version.
    royalty_micros: int = 0

    @property
    def listed(self) -> bool:
        """May a range or @latest pick this build?"""
        return self.status is BuildStatus.SUCCEEDED and not self.yanked
    # A notebook's parameters, inspected at publish (algohost/notebooks.py); None otherwise.
    parameters: list[Parameter] | None = None

    def to_redis(self) -> dict[str, str]:
        return BUILD_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> BuildRecord:
        return BUILD_FIELDS.decode(raw)


def royalty_of(build: BuildRecord, caller: str) -> int:
    """What one call of `build` by `caller` pays its author: nothing to call one's own."""
    return 0 if caller == build.owner else build.royalty_micros


def _parameters(data: list[dict[str, Any]] | None) -> list[Parameter] | None:
    return None if data is None else [Parameter.from_dict(item) for item in data]


def _plain_parameters(params: list[Parameter] | None) -> list[dict[str, Any]] | None:
    return None if params is None else [param.to_dict() for param in params]


BUILD_FIELDS = RecordFields(BuildRecord, "build",
                            typed={"status": BuildStatus, "manifest": manifest_from_dict,
                                   "parameters": _parameters},
                            plain={"manifest": Manifest.to_dict,
                                   "parameters": _plain_parameters})


@dataclass(frozen=True)
class Pointer:
    """Where a call's build was looked up (hash key, field) and what it said: the
    admission script reads it again, so a pointer cached by the API is never acted on
    once it has moved (a new version published, a version deleted)."""

    key: str
    field: str
    build_id: str


@dataclass(frozen=True)
class Resolved:
    build: BuildRecord
    pointer: Pointer | None  # None: looked up fresh, nothing to check again


class Registry:
    def __init__(self, client: redis.Redis, raw: redis.Redis | None = None,
                 cache_s: float = 0.0) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.raw: Any = raw
        # Finished builds are immutable but for deletion, so the API may keep them
        # for cache_s seconds: a call then costs one registry read, not two.
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, BuildRecord]] = {}
        self._pointers: dict[tuple[str, str], tuple[float, str]] = {}

    @staticmethod
    def _algo(owner: str, name: str) -> str:
        return f"{PREFIX}algo:{owner}/{name}"

    @staticmethod
    def _build(build_id: str) -> str:
        return f"{PREFIX}build:{build_id}"

    @staticmethod
    def _owner_builds(owner: str) -> str:
        return f"{PREFIX}builds:{owner}"

    @translate_errors
    def build_count(self, owner: str) -> int:
        """Builds the owner stores (a source here, an image on the engines), deleted ones not."""
        return int(self.redis.scard(self._owner_builds(owner)))

    @translate_errors
    def publish(self, owner: str, name: str, content_hash: str, manifest: Manifest,
                source: bytes, bump: semver.Bump, max_builds: int | None = None,
                parameters: list[Parameter] | None = None) -> tuple[BuildRecord, bool]:
        """Record a build for this content; returns (build, created).

        Identical content returns its existing build, unless that build failed,
        in which case the same version is built again. A new build past the owner's
        `max_builds` stored builds is refused (deleting a version frees its place)."""
        algo = self._algo(owner, name)
        with self.redis.lock(f"{PREFIX}lock:{owner}/{name}", timeout=30, blocking_timeout=30):
            existing_id = self.redis.hget(f"{algo}:hashes", content_hash)
            if existing_id:
                build = self.get_build(existing_id)
                if build.status is not BuildStatus.FAILED:
                    return build, False
                self._reset(build, manifest, source)
                return self.get_build(existing_id), True
            stored = self.build_count(owner)
            if max_builds is not None and stored >= max_builds:
                raise LimitReached(f"{owner} stores {stored} builds; the limit is {max_builds}:"
                                    " delete versions no longer needed", limit="max_builds",
                                    max_builds=max_builds)
            version = semver.next_version(list(self.redis.hkeys(f"{algo}:versions")), bump)
            build_id = "b_" + uuid.uuid4().hex[:20]
            build = BuildRecord(
                id=build_id, owner=owner, name=name, version=version,
                ref=str(AlgorithmRef(owner, name, version)), content_hash=content_hash,
                image=image_tag(owner, name, content_hash), status=BuildStatus.QUEUED,
                created_at=now_iso(), manifest=manifest,
                royalty_micros=manifest.royalty_micros, parameters=parameters)
            pipe = self.redis.pipeline()
            pipe.hsetnx(algo, "owner", owner)
            pipe.hsetnx(algo, "name", name)
            pipe.hsetnx(algo, "created_at", now_iso())
            pipe.sadd(f"{PREFIX}algos:{owner}", name)
            pipe.hset(self._build(build_id), mapping=build.to_redis())
            pipe.hset(f"{algo}:versions", version, build_id)
            pipe.hset(f"{algo}:hashes", content_hash, build_id)
            pipe.sadd(self._owner_builds(owner), build_id)
            pipe.execute()
            self._store_source(build_id, source)
            return build, True

    def _reset(self, build: BuildRecord, manifest: Manifest, source: bytes) -> None:
        values = {"status": BuildStatus.QUEUED.value, "error": None, "reason": None,
                  "finished_at": None, "started_at": None, "manifest": manifest.to_dict()}
        self.redis.hset(self._build(build.id), mapping=encode_fields(values))
        self.redis.delete(f"{self._build(build.id)}:logs")
        self._store_source(build.id, source)

    def _store_source(self, build_id: str, source: bytes) -> None:
        client = self.raw or self.redis
        client.set(f"{self._build(build_id)}:source", source)

    @translate_errors
    def source(self, build_id: str) -> bytes:
        client = self.raw or self.redis
        data = client.get(f"{self._build(build_id)}:source")
        if data is None:
            raise BuildNotFound(f"no source stored for build {build_id}")
        return data if isinstance(data, bytes) else str(data).encode()

    @translate_errors
    def get_build(self, build_id: str) -> BuildRecord:
        raw = self.redis.hgetall(self._build(build_id))
        if not raw:
            raise BuildNotFound(f"build {build_id} does not exist")
        return BuildRecord.from_redis(raw)

    def build_for_call(self, build_id: str) -> BuildRecord:
        """A build as a call needs it; successful ones come from the cache, if any."""
        cached = self._cache.get(build_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        build = self.get_build(build_id)
        if self.cache_s > 0 and build.status is BuildStatus.SUCCEEDED:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[build_id] = (time.monotonic() + self.cache_s, build)
        return build

    @translate_errors
    def update_build(self, build_id: str, **values: Any) -> None:
        BUILD_FIELDS.check(values)
        if isinstance(values.get("manifest"), Manifest):
            values["manifest"] = values["manifest"].to_dict()
        self.redis.hset(self._build(build_id), mapping=encode_fields(values))
        if "status" in values:
            self.redis.publish(self.log_channel(build_id), "status")

    @translate_errors
    def mark_succeeded(self, build_id: str, **values: Any) -> None:
        """Record a successful build and move @latest to it if it is the newest."""
        build = self.get_build(build_id)
        algo = self._algo(build.owner, build.name)
        with self.redis.lock(f"{PREFIX}lock:{build.owner}/{build.name}", timeout=30,
                             blocking_timeout=30):
            self.update_build(build_id, status=BuildStatus.SUCCEEDED.value, **values)
            current = self.redis.hget(algo, "latest_version")
            if build.yanked:
                return
            if current is None or semver.Version.parse(build.version) > semver.Version.parse(
                    current):
                self.redis.hset(algo, mapping={"latest_version": build.version,
                                               "latest_build": build_id})

    @translate_errors
    def delete(self, owner: str, name: str, version: str) -> BuildRecord:
        """Mark a version deleted: never callable again, its number never reused.

        Publishing the same content afterwards makes a new version; @latest moves
        to the newest successful build that is left."""
        build = self.find(owner, name, version)
        algo = self._algo(owner, name)
        if build.status in (BuildStatus.QUEUED, BuildStatus.BUILDING):
            raise BuildNotReady(f"{build.ref} is still building; delete it once it is done",
                                build_status=build.status.value)
        with self.redis.lock(f"{PREFIX}lock:{owner}/{name}", timeout=30, blocking_timeout=30):
            self.update_build(build.id, status=BuildStatus.DELETED.value, deleted_at=now_iso())
            if self.redis.hget(f"{algo}:hashes", build.content_hash) == build.id:
                self.redis.hdel(f"{algo}:hashes", build.content_hash)
            if self.redis.hget(algo, "latest_build") == build.id:
                self._repoint_latest(owner, name)
            self.redis.delete(f"{self._build(build.id)}:source")
            self.redis.srem(self._owner_builds(owner), build.id)
        self.forget(build.id)
        return self.get_build(build.id)

    PUBLIC_KEY = f"{PREFIX}algos:public"

    @translate_errors
    def visibility(self, owner: str, name: str) -> str:
        """`public` or `private` (the default); AlgorithmNotFound if there is no such one."""
        found = self.redis.hmget(self._algo(owner, name), "owner", "visibility")
        if found[0] is None:
            raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")
        return str(found[1] or PRIVATE)

    @translate_errors
    def is_public(self, owner: str, name: str) -> bool:
        return bool(self.redis.sismember(self.PUBLIC_KEY, f"{owner}/{name}"))

    @translate_errors
    def set_visibility(self, owner: str, name: str, visibility: str) -> None:
        if visibility not in (PUBLIC, PRIVATE):
            raise ValueError(f"unknown visibility {visibility!r}")
        self.visibility(owner, name)  # it exists
        pipe = self.redis.pipeline()
        pipe.hset(self._algo(owner, name), "visibility", visibility)
        if visibility == PUBLIC:
            pipe.sadd(self.PUBLIC_KEY, f"{owner}/{name}")
        else:
            pipe.srem(self.PUBLIC_KEY, f"{owner}/{name}")
        pipe.execute()

    @translate_errors
    def public_algorithms(self) -> list[tuple[str, str]]:
        """Every public algorithm as (owner, name), sorted."""
        pairs = (item.split("/", 1) for item in self.redis.smembers(self.PUBLIC_KEY))
        return sorted((owner, name) for owner, name in pairs)

    @translate_errors
    def yank(self, owner: str, name: str, version: str, yanked: bool = True) -> BuildRecord:
        """Hide a version from ranges and @latest (or show it again); exact references
        keep calling it, so nothing that pinned it breaks."""
        build = self.find(owner, name, version)
        if build.status is BuildStatus.DELETED:
            raise VersionNotFound(f"{build.ref} was deleted")
        with self.redis.lock(f"{PREFIX}lock:{owner}/{name}", timeout=30, blocking_timeout=30):
            self.update_build(build.id, yanked=yanked, yanked_at=now_iso() if yanked else None)
            self._repoint_latest(owner, name)
        self.forget(build.id)
        return self.get_build(build.id)

    def _repoint_latest(self, owner: str, name: str) -> None:
        """Point @latest at the newest listed build, or at nothing; under the lock."""
        algo = self._algo(owner, name)
        newest = next((b for b in self.versions(owner, name) if b.listed), None)
        if newest is None:
            self.redis.hdel(algo, "latest_build", "latest_version")
        else:
            self.redis.hset(algo, mapping={"latest_version": newest.version,
                                           "latest_build": newest.id})

    def forget(self, build_id: str) -> None:
        """Drop a build from this process's cache (it was deleted)."""
        self._cache.pop(build_id, None)

    @translate_errors
    def append_log(self, build_id: str, text: str, *, last: bool = False) -> None:
        """Append to the build's log while it is under its cap; the `last` line, which
        says how the build ended, is appended past it too (at most MAX_LAST_LINE_BYTES)."""
        key = f"{self._build(build_id)}:logs"
        if last:
            text = text[:MAX_LAST_LINE_BYTES]
        if last or int(self.redis.strlen(key)) < MAX_BUILD_LOG_BYTES:
            self.redis.append(key, text)
            self.redis.publish(self.log_channel(build_id), "log")

    def log_channel(self, build_id: str) -> str:
        """Pub/sub channel told of each new log line and of the build's end: what a
        follower of the log (`GET .../logs?follow=1`) waits on instead of polling."""
        return f"{self._build(build_id)}:log-events"

    @translate_errors
    def logs_from(self, build_id: str, offset: int) -> bytes:
        """The log's bytes from `offset` on (an offset a follower already sent)."""
        client = self.raw or self.redis
        data = client.getrange(f"{self._build(build_id)}:logs", offset, -1)
        return data if isinstance(data, bytes) else str(data).encode()

    @translate_errors
    def logs(self, build_id: str) -> str:
        return str(self.redis.get(f"{self._build(build_id)}:logs") or "")

    @translate_errors
    def exists(self, owner: str, name: str) -> bool:
        return bool(self.redis.exists(self._algo(owner, name)))

    @translate_errors
    def versions(self, owner: str, name: str) -> list[BuildRecord]:
        """All builds of an algorithm, newest version first."""
        if not self.exists(owner, name):
            raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")
        mapping = self.redis.hgetall(f"{self._algo(owner, name)}:versions")
        ordered = sorted(mapping, key=semver.Version.parse, reverse=True)
        return [self.get_build(mapping[v]) for v in ordered]

    @translate_errors
    def algorithms(self, owner: str) -> list[str]:
        return sorted(self.redis.smembers(f"{PREFIX}algos:{owner}"))

    @translate_errors
    def find(self, owner: str, name: str, version: str) -> BuildRecord:
        """The build for an exact version, whatever its status."""
        if not self.exists(owner, name):
            raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")
        build_id = self.redis.hget(f"{self._algo(owner, name)}:versions", version)
        if not build_id:
            raise VersionNotFound(f"{owner}/{name} has no version {version}")
        return self.get_build(build_id)

    @translate_errors
    def resolve(self, owner: str, name: str, version: str | None) -> BuildRecord:
        """The build a call should run: an exact version, the newest listed one in a range
        (`1`, `1.2`), or @latest (the newest listed one)."""
        if version and VERSION_RANGE.matches(version):
            return self._newest_in_range(owner, name, semver.Range.parse(version))
        if version and version != "latest":
            build_id = self.redis.hget(f"{self._algo(owner, name)}:versions", version)
            build = self.build_for_call(build_id) if build_id else self.find(
                owner, name, version)
            if build.status is not BuildStatus.SUCCEEDED:
                raise BuildNotReady(
                    f"{build.ref} is not callable: its build is {build.status}",
                    build_status=build.status.value)
            return build
        # The common case costs one read (the pointer) and a cached build.
        latest = self.redis.hget(self._algo(owner, name), "latest_build")
        if latest:
            build = self.build_for_call(latest)
            if build.listed:
                return build
        for build in self.versions(owner, name):
            if build.listed:
                # Records written before the pointer existed get it now.
                self.redis.hsetnx(self._algo(owner, name), "latest_build", build.id)
                return build
        raise VersionNotFound(f"{owner}/{name} has no successful build yet")

    @translate_errors
    def resolve_for_call(self, owner: str, name: str, version: str | None,
                         fresh: bool = False) -> Resolved:
        """`resolve` for the API's submits: an exact version's or @latest's pointer may
        come from this process's cache (cache_s), and is then returned for the admission
        to check (FairShare.admit): the common submit reads nothing before it. With
        `fresh` (the cached pointer moved), or for a range, it is `resolve` itself, and
        the next submit reads the pointer again."""
        if self.cache_s <= 0 or (version and VERSION_RANGE.matches(version)):
            return Resolved(self.resolve(owner, name, version), None)
        exact = bool(version) and version != "latest"
        key, field = ((f"{self._algo(owner, name)}:versions", str(version)) if exact
                      else (self._algo(owner, name), "latest_build"))
        if fresh:
            self._pointers.pop((key, field), None)
            return Resolved(self.resolve(owner, name, version), None)
        now = time.monotonic()
        cached = self._pointers.get((key, field))
        if cached is None or cached[0] <= now:
            build_id = self.redis.hget(key, field)
            if not build_id:
                return Resolved(self.resolve(owner, name, version), None)
            if len(self._pointers) > 10_000:
                self._pointers.clear()
            self._pointers[(key, field)] = cached = (now + self.cache_s, build_id)
        try:
            build = self.build_for_call(cached[1])
        except BuildNotFound:  # deleted since the pointer was read
            build = None
        if (build is None or build.status is not BuildStatus.SUCCEEDED
                or not (exact or build.listed)):
            self._pointers.pop((key, field), None)
            return Resolved(self.resolve(owner, name, version), None)
        return Resolved(build, Pointer(key, field, build.id))

    def _newest_in_range(self, owner: str, name: str, wanted: semver.Range) -> BuildRecord:
        if not self.exists(owner, name):
            raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")
        mapping = self.redis.hgetall(f"{self._algo(owner, name)}:versions")
        for version in semver.newest_in(list(mapping), wanted):
            build = self.get_build(mapping[version])  # fresh: a yank is news
            if build.listed:
                return build
        raise VersionNotFound(f"{owner}/{name} has no successful, unyanked version in "
                              f"range {wanted}", range=str(wanted))
