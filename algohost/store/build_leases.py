"""Leases of running builds: a build worker killed mid-build must not leave its build
`building` forever. The worker renews the lease while it builds; the reaper gives an
expired one back to the queue, or fails the build with `worker_lost` past the limit.

Every move is one Lua script over the build's hash and the running set, so a reaper and
a late worker never both win.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from algohost.store import PREFIX, encode_value, translate_errors

RUNNING_KEY = f"{PREFIX}builds:running"  # build ids by when their lease expires

# KEYS: build hash, running set. ARGV: build id, lease expiry, encoded started_at.
# A queued build becomes building, one attempt more; anything else is left alone (0).
_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= '"queued"' then return 0 end
redis.call('HSET', KEYS[1], 'status', '"building"', 'started_at', ARGV[3])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return attempts
"""

# KEYS: running set. ARGV: build id, new expiry. Only a lease still held is renewed.
_RENEW = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: build hash, running set. ARGV: build id, now, max attempts, encoded finished_at,
# encoded error. An expired lease of a build still `building` is taken by one reaper:
# back to `queued` ('queued'), or `failed` past the limit ('failed'); else false.
_REAP = """
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not held or tonumber(held) > tonumber(ARGV[2]) then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'status') ~= '"building"' then return false end
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', '"queued"')
  return 'queued'
end
redis.call('HSET', KEYS[1], 'status', '"failed"', 'finished_at', ARGV[4], 'error', ARGV[5],
           'reason', '"worker_lost"')
return 'failed'
"""


class BuildLeases:
    def __init__(self, client: redis.Redis) -> None:
        self.redis: Any = client
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._reap = client.register_script(_REAP)

    @staticmethod
    def _build(build_id: str) -> str:
        return f"{PREFIX}build:{build_id}"

    @translate_errors
    def claim(self, build_id: str, until: float, started_at: str) -> int:
        """Start a queued build, held until `until`: its attempt number, or 0 when it was not
        queued (a redelivered message, a build another worker runs)."""
        return int(self._claim(keys=[self._build(build_id), RUNNING_KEY],
                               args=[build_id, repr(until), encode_value(started_at)]))

    @translate_errors
    def renew(self, build_id: str, until: float) -> bool:
        return bool(self._renew(keys=[RUNNING_KEY], args=[build_id, repr(until)]))

    @translate_errors
    def release(self, build_id: str) -> None:
        self.redis.zrem(RUNNING_KEY, build_id)

    @translate_errors
    def held(self, build_id: str) -> float | None:
        score = self.redis.zscore(RUNNING_KEY, build_id)
        return None if score is None else float(score)

    @translate_errors
    def reap(self, max_attempts: int, finished_at: str, error: str,
             now: float | None = None) -> list[tuple[str, str]]:
        """(build id, 'queued' or 'failed') for each build whose lease expired."""
        now = time.time() if now is None else now
        reaped = []
        for build_id in self.redis.zrangebyscore(RUNNING_KEY, "-inf", now, start=0, num=100):
            moved = self._reap(keys=[self._build(build_id), RUNNING_KEY],
                               args=[build_id, repr(now), max_attempts,
                                     encode_value(finished_at), encode_value(error)])
            if moved:
                reaped.append((str(build_id), str(moved)))
        return reaped
