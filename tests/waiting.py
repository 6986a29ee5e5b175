"""How tests wait: for an event, through one `eventually()`, or on a clock they move.

No test sleeps to let something happen or not happen. Something that must NOT happen
is checked after an explicit drain (the pool's closer, the broker's queues) or by
moving a `ManualClock` past the moment it would have happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

Describe = str | Callable[[], str]


def eventually(condition: Callable[[], T], timeout_s: float = 30.0,
               what: Describe = "the condition") -> T:
    """Poll `condition` until it returns something truthy, and return that.

    An AssertionError raised by `condition` counts as "not yet"; the last one is
    re-raised if time runs out. `what` (text, or a function giving it, for a costly
    description such as a worker's log) names what was awaited in the failure."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        failure: AssertionError | None = None
        try:
            value = condition()
        except AssertionError as exc:
            failure, value = exc, None  # type: ignore[assignment]
        if value and failure is None:
            return value
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            message = f"gave up after {timeout_s:g} s waiting for {description}"
            if failure is not None:
                raise AssertionError(f"{message}: {failure}") from failure
            raise AssertionError(f"{message} (last value: {value!r})")
        time.sleep(pause)  # the poll interval of this helper, not a synchronisation
        pause = min(pause * 2, 0.2)


class ManualClock:
    """A clock that moves only when a test moves it; pass it where code takes `clock`."""

    def __init__(self, now: float | None = None) -> None:
        # Starts at the wall-clock time, so leases it writes look like real ones.
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
