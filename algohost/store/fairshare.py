"""Fair share of the calls queue: each owner has at most `slots` jobs in the broker or
running; the rest wait in that owner's own backlog and are admitted as its jobs finish.

So a flood of one owner's jobs never stands in front of another owner's call. A slot is
a job id in the owner's slot zset (not a counter), which makes a release idempotent and
lets a repair pass give back slots held by jobs that are already terminal. This module
never loses a job: an id leaves the backlog only by becoming a slot holder in the same
script, and a slot holder still queued long after admission is simply sent again (the
claim's compare-and-set makes a second message harmless).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from algohost.dispatch import (
    BULK,
    PRIORITY_STEPS,
    PRIORITY_TOKEN,
    QUEUE_TOKEN,
    STEP_LISTS,
    STEP_QUEUES,
)
from algohost.errors import LimitReached, RateLimited
from algohost.store import PREFIX, ScriptCall, translate_errors
from algohost.store.jobs import JobCreation
from algohost.store.limits import LimitStore
from algohost.store.registry import Pointer

# KEYS[1] job hash, KEYS[2] owner's job index, KEYS[3] slot set, KEYS[4] backlog list,
# KEYS[5] submit-rate bucket, KEYS[6] the owners with a backlog, ARGV[7] the owner;
# ARGV[1] job id, ARGV[2] now (s), ARGV[3] submits per
# second, ARGV[4] burst, ARGV[5] most pending (slots + backlog), ARGV[6] slots.
# Returns {1, slots held before this one} sent now, {0} held in the backlog,
# {-1, retry_ms} over the submit rate, {-2, pending} over the pending limit. A refused
# job's record is removed: its id was never given to anyone.
# With ARGV[8] (the record's retention, s) > 0, the job's record is written here too,
# once it is accepted: ARGV[19] its fields as a JSON object, ARGV[9] '1' to trim the owner's
# index of entries older than the retention — the submit's one round trip to the store.
# With ARGV[10] a run message (dispatch.RunMessages), an admitted job's message is pushed
# here as well: at the priority step priority_for gives (ARGV[15..18] the steps, ARGV[11..14]
# their queues, KEYS[7..10] their broker lists), returning {1, held, 1}.
# With ARGV[20] a field of hash KEYS[11] (a build pointer the API cached, registry.Pointer),
# the job is admitted only while that field still holds ARGV[21]: else {-3} and nothing
# is written or counted.
_ADMIT = """
if (ARGV[20] or '') ~= '' and redis.call('HGET', KEYS[11], ARGV[20]) ~= ARGV[21] then
  return {-3, 0}
end
local now, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local refuse = function(code, detail)
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {code, detail}
end
if rate > 0 then
  local bucket = redis.call('HMGET', KEYS[5], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    redis.call('HSET', KEYS[5], 'tokens', tostring(tokens), 'at', ARGV[2])
    return refuse(-1, math.ceil((1 - tokens) / rate * 1000))
  end
  redis.call('HSET', KEYS[5], 'tokens', tostring(tokens - 1), 'at', ARGV[2])
  redis.call('EXPIRE', KEYS[5], math.ceil(burst / rate) + 1)
end
local held = redis.call('ZCARD', KEYS[3])
local pending = held + redis.call('LLEN', KEYS[4])
if pending >= tonumber(ARGV[5]) then return refuse(-2, pending) end
local retention = tonumber(ARGV[8]) or 0
if retention > 0 then
  local flat = {}
  for field, value in pairs(cjson.decode(ARGV[19])) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  redis.call('HSET', KEYS[1], unpack(flat))
  redis.call('EXPIRE', KEYS[1], retention)
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], retention)
  if ARGV[9] == '1' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - retention)
  end
end
if held < tonumber(ARGV[6]) then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  if (ARGV[10] or '') == '' then return {1, held} end
  local step = math.min(3, math.floor((held + 3) / 4))
  local message = (string.gsub(ARGV[10], 'QUEUE_TOKEN', ARGV[11 + step], 1))
  message = (string.gsub(message, 'PRIORITY_TOKEN', ARGV[15 + step], 1))
  redis.call('LPUSH', KEYS[7 + step], message)
  return {1, held, 1}
end
redis.call('RPUSH', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[7])
return {0, 0}
""".replace(
    "QUEUE_TOKEN", QUEUE_TOKEN).replace("PRIORITY_TOKEN", PRIORITY_TOKEN)

# KEYS[1] slot zset (score: when admitted), KEYS[2] backlog; ARGV[1] job id releasing
# its slot ('' to only fill free slots), ARGV[2] the job hash key prefix, ARGV[3] slots,
# ARGV[4] now. Hands free slots to the next backlog jobs that are still queued (skipping
# canceled ones) and returns the ids to send now.
_RELEASE = """
if ARGV[1] ~= '' and redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return {} end
local admitted = {}
while redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) do
  local next_id = redis.call('LPOP', KEYS[2])
  if not next_id then break end
  if redis.call('HGET', ARGV[2] .. next_id, 'status') == '"queued"' then
    redis.call('ZADD', KEYS[1], ARGV[4], next_id)
    table.insert(admitted, next_id)
  end
end
return admitted
"""


def priority_for(held: int) -> int:
    """The broker priority of a job sent while its owner already holds `held` slots.

    An owner with nothing under way is sent URGENT; the more slots it holds, the later
    its messages are taken (every 4 held slots, one step lower, down to BULK). A flood's
    jobs are sent at BULK, so a worker thread that frees takes any other owner's first
    call before the rest of the flood: one owner can hold every thread, never the queue.
    The admission script makes the same choice for the messages it pushes."""
    return PRIORITY_STEPS[min(len(PRIORITY_STEPS) - 1, (held + 3) // 4)]


_STEP_ARGS = [*STEP_QUEUES, *(str(step) for step in PRIORITY_STEPS)]


class PointerMoved(Exception):
    """The build pointer a submit was admitted against names another build now."""

    def __init__(self, pointer: Pointer | None) -> None:
        super().__init__(f"{pointer} has moved")
        self.pointer = pointer


@dataclass(frozen=True)
class Admission:
    """What the gate said about one submit: send its message now (at `priority`), or it
    waits in the backlog."""

    sent: bool
    priority: int = BULK
    pushed: bool = False  # its message is already in the broker (written by the script)


class FairShare:
    """The slot zsets and backlogs, and the one place that sends what they admit."""

    OWNERS_KEY = f"{PREFIX}fair:owners"  # owners that have had a backlog: the repair's list

    def __init__(self, client: redis.Redis, limits: LimitStore,
                 enqueue: Callable[[str], None], job_prefix: str,
                 keep: Callable[[str, str], bool] = lambda owner, job_id: False) -> None:
        self.redis: Any = client
        self.limits, self.enqueue, self.job_prefix = limits, enqueue, job_prefix
        # Offered (owner, the first job a release admits): True when the caller runs it itself
        # (a worker thread, right after the job that freed the slot), so it is not sent.
        self.keep = keep
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def slots_key(owner: str) -> str:
        return f"{PREFIX}fair:slots:{owner}"

    @staticmethod
    def backlog_key(owner: str) -> str:
        return f"{PREFIX}fair:backlog:{owner}"

    @staticmethod
    def rate_key(owner: str) -> str:
        return f"{PREFIX}fair:rate:{owner}"

    @translate_errors
    def admit(self, owner: str, job_id: str, index_key: str,
              record: JobCreation | None = None, message: str | None = None,
              pointer: Pointer | None = None) -> Admission:
        """Take the job into a slot or the backlog, or refuse it (removing its record).

        With `record` (JobStore.creation), the job's record is written by the same script
        once accepted, instead of by a round trip of its own before; with `message`
        (dispatch.RunMessages), an admitted job's message is pushed by it too. With
        `pointer`, nothing happens unless it still names its build (PointerMoved)."""
        limits = self.limits.for_owner(owner)
        keys = [self.job_prefix + job_id, index_key, self.slots_key(owner),
                self.backlog_key(owner), self.rate_key(owner), self.OWNERS_KEY]
        args: list[Any] = [job_id, repr(time.time()), repr(limits.submits_per_s),
                           limits.submit_burst, limits.max_queued, limits.max_running, owner,
                           record.retention_s if record is not None else 0,
                           "1" if record is not None and record.trim else "0",
                           message or "", *_STEP_ARGS,
                           record.fields if record is not None else "{}",
                           *((pointer.field, pointer.build_id) if pointer else ("", ""))]
        keys += [*STEP_LISTS, pointer.key if pointer else keys[0]]
        reply = self._admit(keys=keys, args=args)
        code, detail = reply[0], reply[1]
        if code == -3:
            raise PointerMoved(pointer)
        if code == 1:
            return Admission(sent=True, priority=priority_for(int(detail)),
                             pushed=len(reply) > 2)
        if code == 0:
            return Admission(sent=False)
        if code == -1:
            retry = max(1, math.ceil(int(detail) / 1000))
            raise RateLimited(f"over {limits.submits_per_s:g} submits per second; retry in "
                              f"{retry} s", retry_after_s=retry,
                              submits_per_s=limits.submits_per_s)
        raise LimitReached(f"{owner} already has {detail} unfinished jobs; the limit is "
                            f"{limits.max_queued}", limit="max_queued",
                            max_queued=limits.max_queued)

    def finished(self, owner: str, job_id: str) -> None:
        """The job is terminal: its slot goes to the owner's next jobs, which are sent
        (at the enqueue's default, BULK: the owner still has a backlog) unless `keep`
        takes the first. Releasing the same job twice does nothing."""
        self.hand_on(owner, self._release_ids(owner, job_id))

    RELEASE_SOURCE = _RELEASE  # the script release_call's arguments are for

    def release_call(self, owner: str, job_id: str) -> ScriptCall:
        """The release `finished` makes, to send with other scripts; its answer (the ids
        admitted) goes to `hand_on`."""
        slots = self.limits.for_owner(owner).max_running
        return ScriptCall([self.slots_key(owner), self.backlog_key(owner)],
                          [job_id, self.job_prefix, slots, repr(time.time())])

    def hand_on(self, owner: str, admitted: list[str]) -> None:
        """Jobs a release admitted: the first to `keep` if it takes it, the rest sent."""
        if admitted and self.keep(owner, admitted[0]):
            admitted = admitted[1:]
        self._send(admitted)

    @translate_errors
    def _release_ids(self, owner: str, job_id: str) -> list[str]:
        call = self.release_call(owner, job_id)
        return list(self._release(keys=call.keys, args=call.args))

    def _send(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.enqueue(job_id)

    @translate_errors
    def usage(self, owner: str) -> tuple[int, int]:
        """(jobs holding a slot, jobs waiting in the backlog)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.slots_key(owner))
        pipe.llen(self.backlog_key(owner))
        held, waiting = pipe.execute()
        return int(held), int(waiting)

    @translate_errors
    def repair(self, status_of: Callable[[str], str | None], stale_s: float) -> list[str]:
        """Give back slots of jobs that ended without a release (a lost worker, an expired
        record), send again jobs admitted long ago and still queued (their message may
        never have been sent), and fill free slots. Returns the ids sent."""
        sent: list[str] = []
        now = time.time()
        for owner in sorted(self.redis.smembers(self.OWNERS_KEY)):
            holders = self.redis.zrange(self.slots_key(owner), 0, -1, withscores=True)
            for job_id, admitted_at in holders:
                status = status_of(job_id)
                if status is None or status in TERMINAL_STATUSES:
                    sent += self._release_ids(owner, job_id)
                elif status == "queued" and admitted_at < now - stale_s:
                    self.redis.zadd(self.slots_key(owner), {job_id: now}, xx=True)
                    sent.append(job_id)
            sent += self._release_ids(owner, "")
        self._send(sent)
        return sent


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "timed_out", "canceled"})


class UrgentLane:
    """Which owners' first calls are being served right now.

    The calls workers mark an owner as they start one of its first calls (the mark lasts
    `hold_s`); the bulk workers look (at most every `look_every_s`) before running a
    backlog's next job themselves: while another owner is marked, a flood goes back to the
    broker's pace and leaves the CPU to that call. An owner's own first calls never slow
    its flood. A hint only: an unreachable store reads as no one marked."""

    KEY = f"{PREFIX}lanes:urgent"

    def __init__(self, client: redis.Redis, hold_s: float = 0.25, look_every_s: float = 0.02,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis: Any = client
        self.hold_s, self.look_every_s, self.clock = hold_s, look_every_s, clock
        self._seen: tuple[float, dict[str, float]] = (-math.inf, {})  # (when, owner: until)

    def mark(self, owner: str) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.KEY, owner, repr(self.clock() + self.hold_s))
            pipe.pexpire(self.KEY, max(1, int(self.hold_s * 1000)))
            pipe.execute()
        except redis.RedisError:
            pass

    def busy_for(self, owner: str) -> bool:
        """Is another owner's first call being served?"""
        now = self.clock()
        looked, marks = self._seen
        if now - looked >= self.look_every_s:
            try:
                marks = {str(k): float(v) for k, v in self.redis.hgetall(self.KEY).items()}
            except (redis.RedisError, ValueError):
                marks = {}
            self._seen = (now, marks)
        return any(until > now for other, until in marks.items() if other != owner)
