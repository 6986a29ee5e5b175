"""The health check's Docker ping: answered from the last ping, refreshed in the background."""

from __future__ import annotations

import threading

from algohost.api.meta import DockerPing


class Engine:
    """A stand-in for docker-py's client: counts pings; a ping can be held open."""

    def __init__(self) -> None:
        self.pings = 0
        self.answer = True
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def ping(self) -> bool:
        self.pings += 1
        self.entered.set()
        self.release.wait(5)
        return self.answer


def answered_then_down(after_s: float) -> tuple[DockerPing, Engine]:
    """A check that saw the engine answer, `after_s` seconds ago; the engine is down now."""
    engine, now = Engine(), [100.0]
    check = DockerPing("unix:///nowhere", max_age_s=1.0, stale_s=10.0, clock=lambda: now[0])
    check._client = engine
    assert check() is True and engine.pings == 1
    now[0] += after_s
    engine.answer = False
    return check, engine


def test_a_fresh_answer_is_reused_without_a_ping():
    check, engine = answered_then_down(0.5)
    assert check() is True and engine.pings == 1


def test_an_old_answer_is_returned_at_once_while_one_background_ping_refreshes_it():
    check, engine = answered_then_down(2)
    engine.release.clear()  # the engine is slow to answer
    engine.entered.clear()
    assert check() is True  # the last answer, without waiting for the engine
    assert engine.entered.wait(5)
    assert check() is True and engine.pings == 2  # one ping in flight, not one per caller
    engine.release.set()
    for _ in range(100):
        if check() is False:
            break
        threading.Event().wait(0.01)
    assert check() is False and engine.pings == 2


def test_a_stale_answer_is_not_trusted():
    check, engine = answered_then_down(11)
    assert check() is False and engine.pings == 2
