"""Turn a published source into an image: one build, its logs streamed to the registry.

Builds run on their own queue so a slow one never blocks calls; a failed build
keeps its logs and never becomes @latest.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from algohost.archive import read_archive
from algohost.clock import now_iso
from algohost.config import Settings
from algohost.errors import AlgohostError
from algohost.store.registry import BuildStatus, Registry

log = logging.getLogger(__name__)


class Builder(Protocol):
    def build(self, build_id: str, tag: str, source_files: dict[str, bytes],
              manifest: dict[str, Any], on_log: Any) -> str: ...


class BuildRunner:
    def __init__(self, registry: Registry, builder: Builder, settings: Settings) -> None:
        self.registry, self.builder, self.settings = registry, builder, settings

    def run(self, build_id: str) -> None:
        build = self.registry.get_build(build_id)
        if build["status"] != BuildStatus.QUEUED:
            log.info("build %s is %s; nothing to do", build_id, build["status"])
            return
        self.registry.update_build(build_id, status=BuildStatus.BUILDING.value,
                                   started_at=now_iso())
        try:
            files = read_archive(self.registry.source(build_id), self.settings.max_upload_bytes)
            image_id = self.builder.build(build_id, build["image"], files, build["manifest"],
                                          lambda line: self._log(build_id, line))
        except AlgohostError as exc:
            self.registry.append_log(build_id, f"\nbuild failed: {exc.message}\n")
            self.registry.update_build(build_id, status=BuildStatus.FAILED.value,
                                       error=exc.message, finished_at=now_iso())
            return
        except Exception as exc:  # the build worker must survive and say why
            log.exception("build %s failed", build_id)
            self.registry.append_log(build_id, f"\nbuild failed: {exc}\n")
            self.registry.update_build(build_id, status=BuildStatus.FAILED.value,
                                       error=str(exc), finished_at=now_iso())
            return
        self.registry.mark_succeeded(build_id, image_id=image_id, finished_at=now_iso())

    def _log(self, build_id: str, line: str) -> None:
        self.registry.append_log(build_id, line if line.endswith("\n") else line + "\n")
