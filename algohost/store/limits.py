"""Per-owner limits: the operator's defaults (Settings) and per-owner overrides in Redis.

The API and the workers read the same record through `LimitStore.for_owner`, briefly
cached; only operators (the `algohost limits set` command) write overrides.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import redis

from algohost.config import Settings
from algohost.store import PREFIX, translate_errors


@dataclass(frozen=True)
class OwnerLimits:
    max_running: int  # jobs in the calls queue or running at once (fair share slots)
    max_queued: int  # accepted, unfinished jobs
    submits_per_s: float  # sustained submit rate
    submit_burst: int  # submits above that rate at once
    max_builds: int  # stored builds: sources in Redis and images on the engines
    compute_s_per_day: float = 0.0  # calls' run time per UTC day; 0: no budget

    @classmethod
    def defaults(cls, settings: Settings) -> OwnerLimits:
        return cls(max_running=settings.owner_max_running,
                   max_queued=settings.owner_max_queued,
                   submits_per_s=settings.owner_submits_per_s,
                   submit_burst=settings.owner_submit_burst,
                   max_builds=settings.owner_max_builds,
                   compute_s_per_day=settings.owner_compute_s_per_day)

    def with_overrides(self, raw: dict[str, str]) -> OwnerLimits:
        changes: dict[str, Any] = {}
        for f in fields(self):
            if f.name in raw:
                changes[f.name] = float(raw[f.name]) if f.type == "float" else int(raw[f.name])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LIMIT_NAMES = tuple(f.name for f in fields(OwnerLimits))


class LimitStore:
    def __init__(self, client: redis.Redis, settings: Settings, cache_s: float = 0.0) -> None:
        self.redis: Any = client
        self.defaults = OwnerLimits.defaults(settings)
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, OwnerLimits]] = {}

    @staticmethod
    def key(owner: str) -> str:
        return f"{PREFIX}limits:{owner}"

    @translate_errors
    def for_owner(self, owner: str) -> OwnerLimits:
        cached = self._cache.get(owner)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        limits = self.defaults.with_overrides(self.redis.hgetall(self.key(owner)))
        if self.cache_s > 0:
            self._cache[owner] = (now + self.cache_s, limits)
        return limits

    @translate_errors
    def set(self, owner: str, **values: float | int) -> OwnerLimits:
        unknown = set(values) - set(LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown limits: {sorted(unknown)}")
        if values:
            self.redis.hset(self.key(owner), mapping={k: repr(v) if isinstance(v, float)
                                                      else str(v) for k, v in values.items()})
        self._cache.pop(owner, None)
        return self.for_owner(owner)

    @translate_errors
    def reset(self, owner: str) -> OwnerLimits:
        self.redis.delete(self.key(owner))
        self._cache.pop(owner, None)
        return self.for_owner(owner)
