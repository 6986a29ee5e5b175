"""What `algohost run` and `test` remember of a directory: the content hash that last passed.

`algohost publish` sends it, so the version says whether the platform built what ran
locally. Kept under the state directory, never in the algorithm's own directory (which
would change its archive and so its hash).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from algohost.clock import now_iso

RUNS_DIR = "local-runs"


class LocalRuns:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir) / RUNS_DIR

    def _file(self, directory: Path) -> Path:
        key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:32]
        return self.root / f"{key}.json"

    def record(self, directory: Path, content_hash: str) -> None:
        """Remember that this content ran (or passed its tests) here."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self._file(directory)
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps({"directory": str(directory.resolve()),
                                       "content_hash": content_hash,
                                       "recorded_at": now_iso()}), encoding="utf-8")
        os.replace(staging, target)  # a reader never sees half a file

    def last(self, directory: Path) -> str | None:
        """The content hash that last ran successfully from `directory`, if any."""
        try:
            data = json.loads(self._file(directory).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        found = data.get("content_hash") if isinstance(data, dict) else None
        return found if isinstance(found, str) else None
