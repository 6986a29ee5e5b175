"""Redis-backed state: job records, the registry of algorithms and builds, API keys.

The store holds no secret values, ever; translate redis errors into
StoreUnavailable here so callers see algohost errors only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis

from algohost.config import Settings
from algohost.errors import StoreUnavailable

PREFIX = "algohost:"
P = ParamSpec("P")
R = TypeVar("R")


def _timeouts(settings: Settings) -> dict[str, Any]:
    # redis-py 8 reads with a 5 s timeout by default, which would cut a
    # `Prefer: wait` (BLPOP of up to max_wait_s) short; a dead server still
    # surfaces after the longest legitimate wait.
    return {"socket_timeout": settings.max_wait_s + 15, "socket_connect_timeout": 5,
            "health_check_interval": 30}


def connect(settings: Settings) -> redis.Redis:
    """A client that decodes replies to str (records are JSON text)."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True, **_timeouts(settings))


def connect_raw(settings: Settings) -> redis.Redis:
    """A client for binary blobs (algorithm sources)."""
    return redis.Redis.from_url(settings.redis_url, **_timeouts(settings))


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn redis connection failures into StoreUnavailable (503)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"the state store is unreachable: {exc}") from exc

    return wrapper


def encode_value(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """A record as a Redis hash: each field JSON-encoded, so types survive."""
    return {k: encode_value(v) for k, v in fields.items()}


def decode_fields(raw: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in raw.items()}
