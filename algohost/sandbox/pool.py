"""Warm containers kept between calls, bounded per build and in total. Thread-safe.

A session is only reused for the same build, the same secrets version and the same calling
owner (`ContainerSpec.tenant`: what one owner's call leaves behind is never another's), and
never after an outcome that was not reusable. Containers are started and closed outside
the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from algohost.config import SandboxSettings
from algohost.errors import ImageMissing, NoFreeSlot, SandboxUnavailable
from algohost.sandbox.base import ContainerSpec, Sandbox, Session

log = logging.getLogger(__name__)

# How long a call may wait for a busy container of its kind rather than start one: about
# a cold start (container, runner, import). A call waits only while that looks sooner:
# while the build's calls are unknown or short enough that the calls queued before it
# would be through within what is left of this; slow calls start a container at once.
PATIENCE_S = 0.25
CALL_S_WEIGHT = 0.2  # weight of the latest call in a build's running mean of call time


def reuse_key(spec: ContainerSpec) -> tuple[str, str, str]:
    """Sessions of a build are interchangeable only when all of this is equal."""
    return spec.build_id, spec.secrets_version, spec.tenant


@dataclass
class _Idle:
    session: Session
    since: float


@dataclass
class _Build:
    idle: list[_Idle] = field(default_factory=list)  # oldest first
    holding: dict[tuple[str, str, str], int] = field(default_factory=dict)  # busy, by kind
    patient: int = 0  # acquires waiting for a busy container of this build to come back
    call_s: float | None = None  # running mean of how long a call holds a session
    warming: list[tuple[str, str, str]] = field(default_factory=list)  # prewarms under way
    generation: int = 0  # bumped by close_build: older sessions are not kept

    @property
    def busy(self) -> int:
        """Sessions handed out, or being started."""
        return sum(self.holding.values())

    @property
    def size(self) -> int:
        return len(self.idle) + self.busy

    def hold(self, kind: tuple[str, str, str]) -> None:
        self.holding[kind] = self.holding.get(kind, 0) + 1

    def unhold(self, kind: tuple[str, str, str]) -> None:
        held = self.holding.get(kind, 0) - 1
        if held > 0:
            self.holding[kind] = held
        else:
            self.holding.pop(kind, None)


class WarmPool:
    def __init__(
        self,
        sandbox: Sandbox,
        settings: SandboxSettings,
        clock: Callable[[], float] = time.monotonic,
        restore_image: Callable[[ContainerSpec], None] | None = None,
    ) -> None:
        self.sandbox = sandbox
        # Called when a build's image is missing on this engine (a prune, a new host),
        # to make it again before one more try; the pool itself knows no registry.
        self.restore_image = restore_image
        self.settings = settings
        self._clock = clock
        self._cond = threading.Condition()
        self._builds: dict[str, _Build] = {}
        self._generations: dict[int, int] = {}  # id(session) -> generation it was lent in
        self._lent_at: dict[int, float] = {}  # id(session) -> when its caller got it
        self._closed = False
        self._waiting = 0  # acquires blocked until a slot frees up
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        # Removing a container takes a docker round trip of 100 ms or more: evicted
        # and spent sessions are closed off the path of the call that let them go.
        self._closer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="container-closer")

    def _start(self, spec: ContainerSpec) -> Session:
        try:
            return self.sandbox.start(spec)
        except ImageMissing:
            if self.restore_image is None:
                raise
            self.restore_image(spec)
            return self.sandbox.start(spec)

    def acquire(self, spec: ContainerSpec, wait_s: float | None = None,
                nested: bool = False) -> tuple[Session, bool]:
        """A session for `spec` and whether it was warm; waits for a free slot if needed.

        A `nested` call (made by an algorithm whose own container is busy waiting for it)
        starts a container past the caps rather than wait: the slots it would wait for may
        be held by its own ancestors. Its depth bounds how far past.

        Raises NoFreeSlot if no slot frees up within `wait_s` (None: wait forever),
        and whatever `Sandbox.start` raises for a cold start."""
        asked = time.monotonic()
        deadline = None if wait_s is None else asked + wait_s
        kind = reuse_key(spec)
        to_close: list[Session] = []  # dead or evicted; closed once the lock is released
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise SandboxUnavailable("the warm pool is shut down")
                    build = self._builds.setdefault(spec.build_id, _Build())
                    warm = self._take_idle(build, spec, to_close)
                    # A prewarm of this very kind is starting, or a busy one will be back
                    # sooner than a cold start would be ready.
                    coming = warm is None and not nested and kind in build.warming
                    patience = 0.0 if warm is not None or nested or coming else (
                        self._patience(build, kind, asked))
                    if not coming and not patience and (
                            warm is not None or nested or self._reserve(build, to_close)):
                        build.hold(kind)
                        generation = build.generation
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise NoFreeSlot("no container slot became free in time")
                    if patience:
                        build.patient += 1
                        try:
                            self._cond.wait(patience if remaining is None
                                            else min(patience, remaining))
                        finally:
                            build.patient -= 1
                        continue
                    self._waiting += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiting -= 1
                self._prune()  # evictions may have emptied another build
                if warm is not None:
                    self._lent(warm, generation)
                    return warm, True
        finally:
            self._close_later(to_close)
        try:
            session = self._start(spec)
        except BaseException:
            with self._cond:
                build.unhold(kind)
                self._prune()
                self._cond.notify_all()
            raise
        with self._cond:
            self._lent(session, generation)
        return session, False

    def _patience(self, build: _Build, kind: tuple[str, str, str], asked: float) -> float:
        """How much longer an acquire that began at `asked` should wait for a busy session
        of `kind` to come back instead of starting one (0: start one now).

        Worth it for short calls: a flood of them is served by the containers it has,
        where starting one per waiting thread would cost a cold start's CPU each (and,
        with several workers, a multiple of it) to gain nothing. Not for slow calls, when
        nothing of that kind is busy, or at the build's cap (the wait is then for a slot)."""
        holding = build.holding.get(kind, 0)
        left = asked + PATIENCE_S - time.monotonic()
        if holding == 0 or left <= 0 or build.size >= self.settings.pool_max_per_build:
            return 0.0  # (at the build's cap, the wait is for a slot, whatever it decides)
        if build.call_s is not None and (build.patient + 1) * build.call_s / holding >= left:
            return 0.0  # the calls queued before this one would not be through in time
        return left

    def _lent(self, session: Session, generation: int) -> None:
        self._generations[id(session)] = generation
        self._lent_at[id(session)] = time.monotonic()

    def _take_idle(self, build: _Build, spec: ContainerSpec, dead: list[Session]) -> Session | None:
        """Take the most recently used matching session; move dead ones to `dead`."""
        dead += [e.session for e in build.idle if not e.session.alive]
        build.idle = [e for e in build.idle if e.session.alive]
        for entry in reversed(build.idle):
            if reuse_key(entry.session.spec) == reuse_key(spec):
                build.idle.remove(entry)
                return entry.session
        return None

    def _reserve(self, build: _Build, evicted: list[Session]) -> bool:
        """Make room for one more session of `build`, evicting an idle one if that helps."""
        if build.size >= self.settings.pool_max_per_build:
            if not build.idle:  # all busy: wait for one to come back
                return False
            # Idle but not reusable for this spec (other secrets, another calling owner):
            # frees a slot of both kinds.
            evicted.append(build.idle.pop(0).session)
            return True
        if self._total() < self.settings.pool_max_total:
            return True
        victim = self._least_recently_used()
        if victim is None:
            return False
        evicted.append(victim)
        return True

    def _total(self) -> int:
        return sum(b.size for b in self._builds.values())

    def _least_recently_used(self) -> Session | None:
        candidates = [(b.idle[0].since, key) for key, b in self._builds.items() if b.idle]
        if not candidates:
            return None
        _, key = min(candidates)
        return self._builds[key].idle.pop(0).session

    def release(self, session: Session, reusable: bool) -> None:
        """Give a session back: kept warm if `reusable` and still fit, else closed."""
        build_id = session.spec.build_id
        with self._cond:
            build = self._builds[build_id]
            build.unhold(reuse_key(session.spec))
            lent_at = self._lent_at.pop(id(session), None)
            if lent_at is not None:
                held = time.monotonic() - lent_at
                build.call_s = held if build.call_s is None else (
                    build.call_s + CALL_S_WEIGHT * (held - build.call_s))
            generation = self._generations.pop(id(session), -1)
            keep = (
                reusable
                and not self._closed
                and generation == build.generation
                and session.calls < self._calls_allowed(session)
                and session.alive
            )
            if keep:
                build.idle.append(_Idle(session, self._clock()))
            self._prune()
            self._cond.notify_all()
        if not keep:
            self._close_later([session])

    def _calls_allowed(self, session: Session) -> int:
        """pool_max_calls, less up to a tenth by session: a build's containers start
        together and serve calls in turn, so with one limit they would all be recycled
        (and cold-started again) at the same moment."""
        limit = self.settings.pool_max_calls
        return limit - (id(session) >> 4) % (limit // 10 + 1)

    def prewarm(self, spec: ContainerSpec) -> bool:
        """Start one idle session of `spec` if the pool has room without evicting anything
        and holds none of that build yet; True if one was started."""
        with self._cond:
            build = self._builds.setdefault(spec.build_id, _Build())
            if (self._closed or build.size > 0
                    or self._total() >= self.settings.pool_max_total):
                self._prune()
                return False
            build.hold(reuse_key(spec))
            build.warming.append(reuse_key(spec))
            generation = build.generation
        try:
            session = self._start(spec)
        except BaseException:
            with self._cond:
                build.unhold(reuse_key(spec))
                build.warming.remove(reuse_key(spec))
                self._prune()
                self._cond.notify_all()
            raise
        with self._cond:
            build.warming.remove(reuse_key(spec))
            self._generations[id(session)] = generation
        self.release(session, reusable=True)  # wakes a call that waited for it
        return True

    def reap_idle(self) -> int:
        """Close sessions idle for longer than pool_idle_s; returns how many."""
        cutoff = self._clock() - self.settings.pool_idle_s
        with self._cond:
            expired = []
            for build in self._builds.values():
                expired += [e.session for e in build.idle if e.since <= cutoff]
                build.idle = [e for e in build.idle if e.since > cutoff]
            self._prune()
            self._cond.notify_all()
        self._close_all(expired)
        return len(expired)

    def start_reaper(self, interval_s: float | None = None) -> threading.Thread:
        if self._reaper is None:
            interval = interval_s or max(1.0, min(30.0, self.settings.pool_idle_s / 4))
            self._reaper = threading.Thread(
                target=self._reap_loop, args=(interval,), name="warm-pool-reaper", daemon=True
            )
            self._reaper.start()
        return self._reaper

    def _reap_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reap_idle()
            except Exception:  # the reaper must outlive one bad close
                log.exception("reaping idle containers failed")

    def close_build(self, build_id: str) -> int:
        """Close a build's idle sessions now and its busy ones when they come back."""
        with self._cond:
            build = self._builds.get(build_id)
            if build is None:
                return 0
            build.generation += 1
            idle = [e.session for e in build.idle]
            build.idle = []
            self._prune()
            self._cond.notify_all()
        self._close_all(idle)
        return len(idle)

    def shutdown(self) -> None:
        """Close every idle session; busy ones are closed when released."""
        self._stop.set()
        with self._cond:
            self._closed = True
            idle = [e.session for b in self._builds.values() for e in b.idle]
            for build in self._builds.values():
                build.idle = []
            self._cond.notify_all()
        self._close_all(idle)
        self.drain()

    def drain(self) -> None:
        """Wait until every close handed to the background closer has finished."""
        self._closer.shutdown(wait=True)
        self._closer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="container-closer")

    def _close_later(self, sessions: list[Session]) -> None:
        if sessions:
            try:
                self._closer.submit(self._close_all, sessions)
            except RuntimeError:  # the closer is shutting down: close here instead
                self._close_all(sessions)

    def waiting(self) -> int:
        """How many acquires are blocked until a slot frees up."""
        with self._cond:
            return self._waiting

    def stats(self) -> dict[str, dict[str, int]]:
        with self._cond:
            return {k: {"idle": len(b.idle), "busy": b.busy} for k, b in self._builds.items()}

    def _prune(self) -> None:
        # A build with no sessions at all has none lent out, so its generation can go too.
        for key in [k for k, b in self._builds.items() if b.size == 0]:
            del self._builds[key]

    @staticmethod
    def _close_all(sessions: list[Session]) -> None:
        for session in sessions:
            try:
                session.close()
            except Exception:
                log.exception("closing container %s failed", session.container_id)
