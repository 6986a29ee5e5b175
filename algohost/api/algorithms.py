"""Algorithms: publish a source archive as a new immutable build, list versions and builds.

The upload is checked here (safe archive, valid manifest naming this algorithm) before
anything is stored; building the image is the build worker's job, never the API's.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import replace
from typing import Any

from flask import Blueprint

from algohost.api.access import is_owner, owned_algorithm, readable_algorithm
from algohost.api.auth import current_owner, require_owner
from algohost.api.catalogue import AlgorithmQuery, VisibilityChange, catalogue_entry
from algohost.api.context import services
from algohost.api.models import model_registry
from algohost.api.routing import Reply, Upload, route
from algohost.api.schemas import (
    AlgorithmList,
    AlgorithmSummary,
    Build,
    BuildList,
    BuildReply,
    PublishQuery,
    public_build,
)
from algohost.api.secrets import ensure_policy_quietly
from algohost.archive import content_hash, read_archive
from algohost.clock import now_iso
from algohost.errors import InvalidManifest, ServiceUnavailable
from algohost.manifest import Manifest, check_caps, loads_manifest
from algohost.names import LATEST, VERSION_RANGE, validate_algorithm_name, validate_owner
from algohost.notebooks import inspect_parameters, is_notebook_entrypoint, read_notebook
from algohost.store.registry import PUBLIC, BuildRecord, BuildStatus

log = logging.getLogger(__name__)
bp = Blueprint("algorithms", __name__)

MANIFEST_FILE = "algorithm.toml"
SOURCE = Upload(("application/gzip", "application/octet-stream", "application/x-tar+gzip"),
                "A tar.gz of the algorithm's directory, algorithm.toml at its root")


def _check_names(owner: str, name: str) -> None:
    require_owner(owner, f"algorithm {owner}/{name}")
    validate_owner(owner)
    validate_algorithm_name(name)


def manifest_of(files: dict[str, bytes], name: str) -> Manifest:
    """The archive's manifest, checked against the algorithm it is published as."""
    if MANIFEST_FILE not in files:
        raise InvalidManifest(f"{MANIFEST_FILE} not found at the root of the archive",
                              key=MANIFEST_FILE)
    try:
        text = files[MANIFEST_FILE].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidManifest(f"{MANIFEST_FILE} is not UTF-8 text", key=MANIFEST_FILE) from exc
    manifest = loads_manifest(text)
    if manifest.name != name:
        raise InvalidManifest(f"'name' is '{manifest.name}' in {MANIFEST_FILE} but the "
                              f"algorithm is published as '{name}'", key="name")
    if is_notebook_entrypoint(manifest.entrypoint) and manifest.entrypoint not in files:
        raise InvalidManifest(f"'entrypoint' names the notebook {manifest.entrypoint!r}, which "
                              "is not in the archive", key="entrypoint")
    requirements = manifest.build.requirements
    if requirements and posixpath.normpath(requirements) not in files:
        raise InvalidManifest(f"'build.requirements' names {requirements!r}, which is not in "
                              "the archive", key="build.requirements")
    return manifest


def record_origin(build: BuildRecord, created: bool, source_hash: str,
                  query: PublishQuery) -> BuildRecord:
    """What the publish says of the source: the hash that ran locally, the git commit.

    Publishing the same content again returns its build; a new local hash replaces the
    old one (the newest claim is the one to check), the first commit recorded stays."""
    origin: dict[str, Any] = {"source_hash": source_hash} if created else {}
    if query.local_hash:
        origin["local_hash"] = query.local_hash
    if query.git_commit and (created or not build.git_commit):
        origin.update(git_commit=query.git_commit, git_ref=query.git_ref)
    if not origin:
        return build
    services().registry.update_build(build.id, **origin)
    return replace(build, **origin)


@route(bp, "POST", "/v1/algorithms/<owner>/<name>/versions",
       summary="Publish a new version from a source archive", body=SOURCE, query=PublishQuery,
       responses={202: BuildReply, 200: BuildReply}, errors=(403, 429, 503))
def publish(owner: str, name: str, body: bytes, query: PublishQuery) -> Reply:
    _check_names(owner, name)
    svc = services()
    files = read_archive(body, svc.settings.max_upload_bytes)
    parsed = manifest_of(files, name)
    parameters = None
    if is_notebook_entrypoint(parsed.entrypoint):
        notebook = read_notebook(files[parsed.entrypoint], parsed.entrypoint)
        parameters = inspect_parameters(notebook, parsed.entrypoint)
    settings = svc.settings
    check_caps(parsed.resources, max_memory_mb=settings.max_memory_mb,
               max_cpus=settings.max_cpus, max_timeout_s=settings.max_timeout_s)
    pinned = model_registry().pin(owner, parsed.models) if parsed.models else {}
    # NAME@latest is pinned here, so a new push of the model makes a new version.
    manifest = replace(parsed, models={k: v.ref for k, v in pinned.items()})
    build, created = svc.registry.publish(owner, name, content_hash(files, manifest.to_dict()),
                                          manifest, body, query.bump,
                                          max_builds=svc.limits.for_owner(owner).max_builds,
                                          parameters=parameters)
    build = record_origin(build, created, content_hash(files, parsed.to_dict()), query)
    ensure_policy_quietly(owner, name)
    if manifest.visibility is not None:
        svc.registry.set_visibility(owner, name, manifest.visibility)
    if svc.artifacts is not None:
        for version in pinned.values():
            svc.artifacts.reference(owner, version.sha256, f"version:{build.id}")
    if not created:
        return Reply(BuildReply(build=public_build(build)), 200)
    try:
        svc.dispatcher.enqueue_build(build.id)
    except Exception as exc:  # the broker's errors vary by transport
        log.exception("could not enqueue build %s", build.id)
        # Failed, so publishing the same content again retries the build.
        svc.registry.update_build(build.id, status=BuildStatus.FAILED.value,
                                  error="the build queue was unreachable",
                                  finished_at=now_iso())
        raise ServiceUnavailable("the build queue is unreachable; publish again",
                                 build_id=build.id) from exc
    return Reply(BuildReply(build=public_build(build)), 202)


@route(bp, "GET", "/v1/algorithms",
       summary="List your algorithms, or the public catalogue (?visibility=public), "
               "optionally matching a word (?q=)",
       query=AlgorithmQuery, responses={200: AlgorithmList})
def list_algorithms(query: AlgorithmQuery | None = None) -> Reply:
    query = query or AlgorithmQuery()  # the console calls it without one
    owner, registry = current_owner(), services().registry
    if query.visibility == PUBLIC:
        found = registry.public_algorithms()
    else:
        found = [(owner, name) for name in registry.algorithms(owner)]
    summaries = []
    for algo_owner, name in found:
        summary = catalogue_entry(registry, algo_owner, name)
        if query.visibility not in (None, summary.visibility):
            continue
        if query.q and not summary.mentions(query.q):
            continue
        summaries.append(summary)
    return Reply(AlgorithmList(algorithms=summaries))


@route(bp, "PUT", "/v1/algorithms/<owner>/<name>/visibility",
       summary="Make an algorithm public (listed, callable by every key) or private",
       body=VisibilityChange, responses={200: AlgorithmSummary}, errors=(403, 404))
def set_visibility(owner: str, name: str, body: VisibilityChange) -> Reply:
    owned_algorithm(owner, name)
    registry = services().registry
    registry.set_visibility(owner, name, body.visibility)
    return Reply(catalogue_entry(registry, owner, name))


@route(bp, "GET", "/v1/algorithms/<owner>/<name>/versions",
       summary="List an algorithm's versions, newest first (yours, or a public one)",
       responses={200: BuildList}, errors=(404,))
def list_versions(owner: str, name: str) -> Reply:
    readable_algorithm(owner, name)
    builds = services().registry.versions(owner, name)
    return Reply(BuildList(versions=[public_build(build) for build in builds]))


@route(bp, "GET", "/v1/algorithms/<owner>/<name>/versions/<version>",
       summary="Read one version's build ('latest', or a range such as 1 or 1.2: the version "
               "a call would run); its owner also sees the build logs",
       responses={200: Build}, errors=(404,))
def get_version(owner: str, name: str, version: str) -> Reply:
    readable_algorithm(owner, name)
    registry = services().registry
    if version == LATEST or VERSION_RANGE.matches(version):
        build = registry.resolve(owner, name, version)
    else:
        build = registry.find(owner, name, version)
    # A build's output may name private package indexes or paths: the author's alone.
    logs = registry.logs(build.id) if is_owner(owner) else None
    return Reply(public_build(build, logs=logs))


@route(bp, "POST", "/v1/algorithms/<owner>/<name>/versions/<version>/yank",
       summary="Yank a version: ranges and @latest skip it; exact references still call it",
       responses={200: Build}, errors=(403, 404))
def yank_version(owner: str, name: str, version: str) -> Reply:
    owned_algorithm(owner, name)
    return Reply(public_build(services().registry.yank(owner, name, version)))


@route(bp, "POST", "/v1/algorithms/<owner>/<name>/versions/<version>/unyank",
       summary="Undo a yank: ranges and @latest may pick the version again",
       responses={200: Build}, errors=(403, 404))
def unyank_version(owner: str, name: str, version: str) -> Reply:
    owned_algorithm(owner, name)
    return Reply(public_build(services().registry.yank(owner, name, version, yanked=False)))


@route(bp, "DELETE", "/v1/algorithms/<owner>/<name>/versions/<version>",
       summary="Delete a version: never callable again; its warm containers and image go",
       responses={200: Build}, errors=(403, 404, 409))
def delete_version(owner: str, name: str, version: str) -> Reply:
    owned_algorithm(owner, name)
    svc = services()
    build = svc.registry.delete(owner, name, version)
    if svc.artifacts is not None and svc.models is not None:
        for ref in build.manifest.models.values():
            digest = ref.partition("@sha256:")[2]
            svc.artifacts.unreference(owner, digest, f"version:{build.id}")
    try:
        svc.dispatcher.retire_build(build.id)
    except Exception:  # the version is deleted either way; idle containers time out
        log.exception("could not tell the workers that build %s was deleted", build.id)
    return Reply(public_build(build))
