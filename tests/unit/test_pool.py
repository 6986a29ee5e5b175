"""The warm pool, against the in-process stub sandbox and a manual clock.

Closes run on the pool's background closer: a test drains it before it looks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from algohost.config import SandboxSettings
from algohost.errors import ContainerStartFailed, ImageMissing, NoFreeSlot, SandboxUnavailable
from algohost.sandbox.base import ContainerSpec, ExitReason
from algohost.sandbox.pool import PATIENCE_S, WarmPool
from algohost.sandbox.stub import SimulatedExit, StubSandbox, StubSession
from tests.waiting import ManualClock, eventually


def echo(x: Any) -> Any:
    return x


def spec(build_id: str = "a", secrets_version: str = "v1") -> ContainerSpec:
    return ContainerSpec(build_id, image=f"img-{build_id}", secrets_version=secrets_version)


def make_pool(**limits: Any) -> tuple[WarmPool, StubSandbox, ManualClock]:
    sandbox = StubSandbox({"a": echo, "b": echo, "c": echo})
    settings = SandboxSettings(
        **{"pool_max_total": 4, "pool_max_per_build": 2, "pool_idle_s": 60.0, **limits}
    )
    clock = ManualClock(1000.0)
    return WarmPool(sandbox, settings, clock=clock), sandbox, clock


def test_a_released_session_is_reused_warm_for_the_same_build() -> None:
    pool, sandbox, _ = make_pool()
    first, warm = pool.acquire(spec())
    assert not warm
    pool.release(first, reusable=True)
    second, warm = pool.acquire(spec())
    assert warm and second is first and len(sandbox.sessions) == 1


def test_a_session_is_not_reused_after_an_outcome_that_was_not_reusable() -> None:
    pool, sandbox, _ = make_pool()
    session, _ = pool.acquire(spec())
    outcome = session.call(1, timeout_s=1)
    assert outcome.reusable
    pool.release(session, reusable=False)
    pool.drain()
    assert isinstance(session, StubSession) and session.closed
    again, warm = pool.acquire(spec())
    assert not warm and again is not session


def test_a_session_killed_by_its_call_is_replaced() -> None:
    def times_out(_: Any) -> Any:
        raise SimulatedExit(ExitReason.TIMEOUT)

    pool = WarmPool(StubSandbox({"a": times_out}), SandboxSettings())
    session, _ = pool.acquire(spec())
    outcome = session.call(None, timeout_s=1)
    assert outcome.reason is ExitReason.TIMEOUT and not outcome.reusable
    pool.release(session, outcome.reusable)
    assert pool.acquire(spec())[1] is False


def test_sessions_are_not_shared_across_builds_or_secrets_versions() -> None:
    pool, sandbox, _ = make_pool()
    session, _ = pool.acquire(spec("a", "v1"))
    pool.release(session, reusable=True)
    assert pool.acquire(spec("b", "v1"))[0] is not session
    assert pool.acquire(spec("a", "v2"))[0] is not session
    assert len(sandbox.sessions) == 3


def test_a_session_never_serves_a_second_calling_owner() -> None:
    pool, sandbox, _ = make_pool()
    alices = replace(spec("a"), tenant="alice")
    session, _ = pool.acquire(alices)
    pool.release(session, reusable=True)
    bobs, warm = pool.acquire(replace(spec("a"), tenant="bob"))
    assert bobs is not session and not warm
    pool.release(bobs, reusable=True)
    again, warm = pool.acquire(alices)
    assert again is session and warm and len(sandbox.sessions) == 2


def test_a_nested_call_starts_past_the_caps_instead_of_waiting_on_its_ancestors() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=1, pool_max_total=1)
    parent, _ = pool.acquire(spec("a"))
    with pytest.raises(NoFreeSlot):
        pool.acquire(spec("a"), wait_s=0)
    child, warm = pool.acquire(spec("a"), wait_s=0, nested=True)
    assert child is not parent and not warm and len(sandbox.sessions) == 2
    pool.release(child, reusable=True)
    pool.release(parent, reusable=True)
    assert pool.stats()["a"]["busy"] == 0


def test_per_build_max_holds_under_concurrent_threads() -> None:
    running = started = peak = 0
    lock = threading.Lock()
    # The first two calls wait for each other: both sessions are busy at once.
    first_two = threading.Barrier(2, timeout=10)

    def paired(_: Any) -> Any:
        nonlocal running, started, peak
        with lock:
            running, started = running + 1, started + 1
            peak, nth = max(peak, running), started
        if nth <= 2:
            first_two.wait()
        with lock:
            running -= 1
        return "ok"

    sandbox = StubSandbox({"a": paired})
    pool = WarmPool(sandbox, SandboxSettings(pool_max_per_build=2, pool_max_total=8))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                session, _ = pool.acquire(spec())
                outcome = session.call(None, timeout_s=5)
                pool.release(session, outcome.reusable)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert peak == 2
    assert len(sandbox.sessions) == 2
    assert pool.stats() == {"a": {"idle": 2, "busy": 0}}


def test_a_full_pool_evicts_the_least_recently_used_idle_session_of_another_build() -> None:
    pool, _, clock = make_pool(pool_max_total=2)
    old, _ = pool.acquire(spec("a"))
    newer, _ = pool.acquire(spec("b"))
    pool.release(old, reusable=True)
    clock.now += 1
    pool.release(newer, reusable=True)
    session, warm = pool.acquire(spec("c"))
    assert not warm
    pool.drain()
    assert isinstance(old, StubSession) and old.closed
    assert isinstance(newer, StubSession) and not newer.closed
    assert pool.stats() == {"b": {"idle": 1, "busy": 0}, "c": {"idle": 0, "busy": 1}}


def test_when_every_slot_is_busy_acquire_waits_for_a_release() -> None:
    pool, _, _ = make_pool(pool_max_total=1)
    held, _ = pool.acquire(spec("a"))
    with pytest.raises(SandboxUnavailable):
        pool.acquire(spec("b"), wait_s=0.05)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(spec("b"), wait_s=5)))
    waiter.start()
    eventually(lambda: pool.waiting() == 1, what="the second acquire to wait")
    assert not got
    pool.release(held, reusable=True)
    waiter.join(timeout=5)
    assert got and got[0][1] is False
    pool.drain()
    assert isinstance(held, StubSession) and held.closed  # evicted to make room for "b"


def test_idle_sessions_past_pool_idle_s_are_reaped() -> None:
    pool, _, clock = make_pool(pool_idle_s=60.0)
    first, _ = pool.acquire(spec("a"))
    second, _ = pool.acquire(spec("b"))
    pool.release(first, reusable=True)
    clock.now += 30
    pool.release(second, reusable=True)
    clock.now += 31
    assert pool.reap_idle() == 1
    assert isinstance(first, StubSession) and first.closed
    assert isinstance(second, StubSession) and not second.closed
    assert pool.stats() == {"b": {"idle": 1, "busy": 0}}


def test_the_reaper_thread_reaps_in_the_background() -> None:
    pool, _, clock = make_pool(pool_idle_s=60.0)
    session, _ = pool.acquire(spec())
    pool.release(session, reusable=True)
    clock.now += 61
    pool.start_reaper(interval_s=0.01)
    assert isinstance(session, StubSession)
    eventually(lambda: session.closed, what="the reaper to close the idle session")
    pool.shutdown()


def test_a_session_is_recycled_after_pool_max_calls() -> None:
    pool, _, _ = make_pool(pool_max_calls=2)
    session, _ = pool.acquire(spec())
    for _ in range(2):
        session.call(None, timeout_s=1)
    pool.release(session, reusable=True)
    pool.drain()
    assert isinstance(session, StubSession) and session.closed


def test_a_dead_idle_session_is_never_handed_out() -> None:
    pool, _, _ = make_pool()
    session, _ = pool.acquire(spec())
    pool.release(session, reusable=True)
    session.close()  # its container died while idle
    again, warm = pool.acquire(spec())
    assert not warm and again is not session


def test_a_failed_start_gives_its_slot_back() -> None:
    pool, _, _ = make_pool(pool_max_total=1)
    with pytest.raises(ContainerStartFailed):
        pool.acquire(spec("unknown"))
    assert pool.acquire(spec("a"), wait_s=0.1)[1] is False


def test_close_build_closes_idle_sessions_now_and_busy_ones_on_release() -> None:
    pool, _, _ = make_pool()
    idle, _ = pool.acquire(spec())
    busy, _ = pool.acquire(spec())
    pool.release(idle, reusable=True)
    assert pool.close_build("a") == 1
    assert isinstance(idle, StubSession) and idle.closed
    pool.release(busy, reusable=True)
    pool.drain()
    assert isinstance(busy, StubSession) and busy.closed
    assert pool.acquire(spec())[1] is False


def test_shutdown_closes_everything_and_refuses_new_work() -> None:
    pool, sandbox, _ = make_pool()
    idle, _ = pool.acquire(spec("a"))
    busy, _ = pool.acquire(spec("b"))
    pool.release(idle, reusable=True)
    pool.shutdown()
    pool.release(busy, reusable=True)
    assert sandbox.open_sessions == []
    with pytest.raises(SandboxUnavailable):
        pool.acquire(spec("a"))


def test_stub_reports_an_exception_without_killing_the_session() -> None:
    def fails(_: Any) -> Any:
        raise KeyError("missing")

    session = StubSandbox({"a": fails}).start(spec())
    outcome = session.call(None, timeout_s=1)
    assert outcome.reason is ExitReason.EXCEPTION and outcome.reusable and session.alive
    assert outcome.error is not None and outcome.error["type"] == "KeyError"


class ImagelessSandbox(StubSandbox):
    """Its image is missing until restored."""

    def __init__(self) -> None:
        super().__init__({"a": lambda payload: payload})
        self.image_present = False

    def start(self, spec: ContainerSpec) -> StubSession:
        if not self.image_present:
            raise ImageMissing(f"{spec.image} is not here")
        return super().start(spec)


def test_a_missing_image_is_restored_once_and_the_start_retried() -> None:
    sandbox = ImagelessSandbox()
    restored: list[str] = []

    def restore(spec: ContainerSpec) -> None:
        restored.append(spec.build_id)
        sandbox.image_present = True

    pool = WarmPool(sandbox, SandboxSettings(), restore_image=restore)
    session, warm = pool.acquire(ContainerSpec("a", "img:a"))
    assert not warm and restored == ["a"]
    assert session.call(1, 5).output == 1


def test_a_missing_image_without_a_restorer_fails_the_start() -> None:
    pool = WarmPool(ImagelessSandbox(), SandboxSettings())
    with pytest.raises(ImageMissing):
        pool.acquire(ContainerSpec("a", "img:a"))
    assert pool.stats() == {} or all(v["busy"] == 0 for v in pool.stats().values())


def test_a_spec_never_shows_its_secret_values() -> None:
    spec = ContainerSpec("a", "img:a", secrets={"TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(spec) and "s3cr3t-value" not in str(spec)


def test_a_prewarmed_session_serves_the_first_call_warm() -> None:
    pool, sandbox, _ = make_pool()
    assert pool.prewarm(spec())
    assert len(sandbox.sessions) == 1
    session, warm = pool.acquire(spec())
    assert warm and session is sandbox.sessions[0]


def test_prewarm_starts_nothing_for_a_build_that_has_a_session_already() -> None:
    pool, sandbox, _ = make_pool()
    assert pool.prewarm(spec())
    assert not pool.prewarm(spec())
    busy, _ = pool.acquire(spec())
    assert not pool.prewarm(spec())  # busy counts too
    assert len(sandbox.sessions) == 1


def test_prewarm_evicts_nothing_when_the_pool_is_full() -> None:
    pool, sandbox, _ = make_pool(pool_max_total=2)
    for build_id in ("a", "b"):
        session, _ = pool.acquire(spec(build_id))
        pool.release(session, reusable=True)
    assert not pool.prewarm(spec("c"))
    pool.drain()
    assert len(sandbox.sessions) == 2
    assert not any(isinstance(s, StubSession) and s.closed for s in sandbox.sessions)


class HeldSandbox(StubSandbox):
    """Starts hold until the test lets them go."""

    def __init__(self) -> None:
        super().__init__({"a": echo})
        self.go = threading.Event()
        self.starting = threading.Event()

    def start(self, spec: ContainerSpec) -> StubSession:
        self.starting.set()
        assert self.go.wait(30)
        return super().start(spec)


def test_a_call_that_comes_while_its_build_is_prewarmed_waits_for_that_container() -> None:
    sandbox = HeldSandbox()
    pool = WarmPool(sandbox, SandboxSettings(pool_max_total=4, pool_max_per_build=2))
    prewarm = threading.Thread(target=pool.prewarm, args=(spec(),))
    prewarm.start()
    assert sandbox.starting.wait(30)
    got: list[tuple[Any, bool]] = []
    caller = threading.Thread(target=lambda: got.append(pool.acquire(spec())))
    caller.start()
    eventually(lambda: pool.waiting() == 1, what="the call waiting for the prewarm")
    sandbox.go.set()
    prewarm.join(30)
    caller.join(30)
    assert got[0][1] is True and len(sandbox.sessions) == 1


def test_a_builds_sessions_are_recycled_at_different_call_counts() -> None:
    pool, _, _ = make_pool(pool_max_calls=1000, pool_max_per_build=8, pool_max_total=8)
    sessions = [pool.acquire(spec())[0] for _ in range(8)]
    allowed = {pool._calls_allowed(session) for session in sessions}
    assert all(900 <= limit <= 1000 for limit in allowed) and len(allowed) > 1
    for session in sessions:
        pool.release(session, reusable=True)
    pool.shutdown()


def test_a_short_call_waits_for_the_busy_container_rather_than_start_another() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=4)
    first, _ = pool.acquire(spec())
    pool.release(first, reusable=True)  # the build's calls are known to be short
    held, warm = pool.acquire(spec())
    got: list[tuple[Any, bool]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(spec())))
    waiter.start()
    eventually(lambda: pool._builds["a"].patient == 1)
    pool.release(held, reusable=True)
    waiter.join(5)
    assert warm and got == [(first, True)] and len(sandbox.sessions) == 1


def test_a_slow_call_does_not_make_the_next_one_wait_for_its_container() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=4)
    first, _ = pool.acquire(spec())
    time.sleep(PATIENCE_S)  # a call as long as a cold start
    pool.release(first, reusable=True)
    pool.acquire(spec())
    started = time.monotonic()
    other, warm = pool.acquire(spec())
    assert time.monotonic() - started < PATIENCE_S / 2
    assert not warm and other is not first and len(sandbox.sessions) == 2


def test_with_nothing_known_of_the_calls_a_cold_start_waits_at_most_the_patience() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=4)
    first, _ = pool.acquire(spec())
    started = time.monotonic()
    other, warm = pool.acquire(spec())
    assert PATIENCE_S * 0.9 <= time.monotonic() - started < PATIENCE_S * 4
    assert not warm and other is not first and len(sandbox.sessions) == 2


def test_only_a_busy_session_of_the_same_kind_is_waited_for() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=4)
    first, _ = pool.acquire(spec(secrets_version="v1"))
    pool.release(first, reusable=True)
    pool.acquire(spec(secrets_version="v1"))
    started = time.monotonic()
    other, warm = pool.acquire(spec(secrets_version="v2"))  # v1's would never do for it
    assert time.monotonic() - started < PATIENCE_S / 2
    assert not warm and len(sandbox.sessions) == 2


def test_a_nested_call_never_waits_for_a_busy_container() -> None:
    pool, sandbox, _ = make_pool(pool_max_per_build=4)
    pool.acquire(spec())
    started = time.monotonic()
    _, warm = pool.acquire(spec(), nested=True)
    assert time.monotonic() - started < PATIENCE_S / 2 and not warm
