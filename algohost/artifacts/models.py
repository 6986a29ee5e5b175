"""Models: named, versioned blobs an algorithm attaches to its builds, mounted read-only.

A model version is a digest: a file, or a directory packed as a deterministic tar (so
the same tree always has the same digest and pushing it again uploads nothing).
`NAME@latest` in a manifest is pinned to a digest when the algorithm is published.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import redis

from algohost.artifacts.blobs import BlobStore
from algohost.errors import InvalidManifest, NotFound
from algohost.names import MODEL_REF
from algohost.store import PREFIX, translate_errors

FILE, DIRECTORY = "file", "directory"
MODELS_DIR = "/models"  # a build's model KEY is mounted read-only at MODELS_DIR/KEY
TAR_MEDIA_TYPE = "application/x-tar"


class ModelNotFound(NotFound):
    code = "model_not_found"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    sha256: str
    kind: str  # FILE or DIRECTORY
    filename: str  # the pushed file's name (a directory's own name)
    size: int
    pushed_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}@sha256:{self.sha256}"


def pack_directory(root: Path, out: IO[bytes]) -> None:
    """A tar of `root` that depends only on names, bytes and the executable bit."""

    def normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
        return info

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in root.rglob("*") if not p.is_symlink()):
            if path.is_dir() or path.is_file():
                tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False,
                        filter=normal)


class ModelRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.redis: Any = client

    @staticmethod
    def _versions(owner: str, name: str) -> str:
        return f"{PREFIX}model:{owner}:{name}"

    @staticmethod
    def _names(owner: str) -> str:
        return f"{PREFIX}models:{owner}"

    @translate_errors
    def push(self, owner: str, version: ModelVersion) -> bool:
        """Record a version and make it the latest; False when it was already there."""
        key = self._versions(owner, version.name)
        pipe = self.redis.pipeline()
        pipe.hsetnx(key, version.sha256, json.dumps(asdict(version)))
        pipe.hset(key, "@latest", version.sha256)
        pipe.sadd(self._names(owner), version.name)
        created, _, _ = pipe.execute()
        return bool(created)

    @translate_errors
    def get(self, owner: str, name: str, digest: str) -> ModelVersion | None:
        raw = self.redis.hget(self._versions(owner, name), digest)
        return ModelVersion(**json.loads(raw)) if raw else None

    @translate_errors
    def latest(self, owner: str, name: str) -> ModelVersion | None:
        digest = self.redis.hget(self._versions(owner, name), "@latest")
        return self.get(owner, name, digest) if digest else None

    @translate_errors
    def versions(self, owner: str, name: str) -> list[ModelVersion]:
        raw = self.redis.hgetall(self._versions(owner, name))
        found = [ModelVersion(**json.loads(v)) for k, v in raw.items() if k != "@latest"]
        return sorted(found, key=lambda v: v.pushed_at, reverse=True)

    @translate_errors
    def names(self, owner: str) -> list[str]:
        return sorted(self.redis.smembers(self._names(owner)))

    def resolve(self, owner: str, ref: str) -> ModelVersion:
        """`NAME@latest` or `NAME@sha256:<hex>` of this owner, or ModelNotFound."""
        match = MODEL_REF.fullmatch(ref)
        if match is None:
            raise ModelNotFound(f"{ref!r} is not NAME@latest or NAME@sha256:<hex>")
        name, tag = match.groups()
        found = (self.latest(owner, name) if tag == "latest"
                 else self.get(owner, name, tag.removeprefix("sha256:")))
        if found is None:
            raise ModelNotFound(f"no model {ref} of {owner}; push it with "
                                f"`algohost models push {name} PATH`")
        return found

    def pin(self, owner: str, models: dict[str, str]) -> dict[str, ModelVersion]:
        """The manifest's [models], each resolved to a pushed version (InvalidManifest if not)."""
        pinned = {}
        for key, ref in models.items():
            try:
                pinned[key] = self.resolve(owner, ref)
            except ModelNotFound as exc:
                raise InvalidManifest(exc.message, key=f"models.{key}") from exc
        return pinned


class ModelCache:
    """Models unpacked on the worker host, once per digest, for read-only bind mounts."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root, self.blobs = root, blobs

    def path(self, version: ModelVersion) -> Path:
        """The host path to mount: the model's file, or its unpacked directory."""
        entry = self.root / version.sha256
        if not entry.exists():
            self._fill(version, entry)
        return entry / (version.filename if version.kind == FILE else "tree")

    def _fill(self, version: ModelVersion, entry: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(mode=0o755)
        try:
            if version.kind == FILE:
                target = staging / version.filename
                with self.blobs.open(version.sha256) as blob, open(target, "wb") as out:
                    shutil.copyfileobj(blob, out, 1024 * 1024)
                target.chmod(0o644)
            else:
                tree = staging / "tree"
                tree.mkdir(mode=0o755)
                with self.blobs.open(version.sha256) as blob, \
                        tarfile.open(fileobj=blob, mode="r|") as tar:
                    tar.extractall(tree, filter="data")
            staging.chmod(0o755)
            os.rename(staging, entry)  # another thread may have won: its copy is the same
        except OSError:
            if entry.exists():
                shutil.rmtree(staging, ignore_errors=True)
                return
            shutil.rmtree(staging, ignore_errors=True)
            raise
