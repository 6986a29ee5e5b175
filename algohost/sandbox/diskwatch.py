"""Watches a running build step's writable layer and reports it once it passes its quota.

Docker's own layer quota (`storage_opt size=`) needs overlay2 on xfs with pquota, so the
layer is measured instead. A measure walks the whole layer (about 3 µs a file, in the
engine), so the watch waits several times a measure's length between two: a step that
writes millions of files slows its own watch, never the engine. It never kills anything
itself; its caller decides what passing the quota does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

INTERVAL_S = 1.0  # between two measures of a layer that measures quickly
BUSY_FACTOR = 4  # at least this many measures' length between two: the engine stays idle 80%


class DiskWatch:
    """Measures a layer against `limit_bytes`: once with `check`, or in a thread of its own
    from `start` until `close` or until the layer passes the limit.

    `measure` returns the layer's size in bytes, or None when it could not be measured
    this time (the engine was busy, the container is going): the watch tries again."""

    def __init__(self, measure: Callable[[], int | None], limit_bytes: int, *,
                 interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.measure, self.limit_bytes = measure, limit_bytes
        self.interval_s, self.clock = interval_s, clock
        self.over: int | None = None  # the size that passed the limit, once one did
        self.measures = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_over: Callable[[int], None]) -> None:
        """Watch until closed; past the limit, call `on_over` once with the size seen."""
        self._thread = threading.Thread(target=self._watch, args=(on_over,),
                                        name="disk-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching; waits for a measure under way, so `over` is final after it."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    def check(self) -> int | None:
        """Measure once now (after the step, before its commit); the size if over the quota."""
        size = self.measure()
        if size is not None and size > self.limit_bytes:
            self.over = size
        return self.over

    def _watch(self, on_over: Callable[[int], None]) -> None:
        pause = self.interval_s
        while not self._closed.wait(pause):
            started = self.clock()
            size = self.measure()
            self.measures += 1
            if size is not None and size > self.limit_bytes:
                self.over = size
                on_over(size)
                return
            pause = pause_after(self.clock() - started, self.interval_s)


def pause_after(measure_s: float, interval_s: float = INTERVAL_S) -> float:
    """The wait before the next measure: the interval, or longer after a slow measure."""
    return max(interval_s, BUSY_FACTOR * measure_s)
