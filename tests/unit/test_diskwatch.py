"""The build disk watch against a fake layer: when it reports, and what it never does."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from algohost.sandbox.diskwatch import BUSY_FACTOR, DiskWatch, pause_after


def layer(sizes: Iterable[int | None], then: int | None = 0) -> Callable[[], int | None]:
    """A fake layer's measures: `sizes` in turn, then `then` for ever."""
    pending = iter(sizes)
    return lambda: next(pending, then)


def watched(watch: DiskWatch) -> list[int]:
    """Start `watch` and wait until it reports; the sizes it reported."""
    reported: list[int] = []
    done = threading.Event()

    def on_over(size: int) -> None:
        reported.append(size)
        done.set()

    watch.start(on_over)
    assert done.wait(30), "the watch never reported"
    watch.close()
    return reported


def test_a_layer_past_its_limit_is_reported_once_with_the_size_seen() -> None:
    watch = DiskWatch(layer([10, 50, 100, 101, 500]), 100, interval_s=0)
    assert watched(watch) == [101]
    assert watch.over == 101
    assert watch.measures == 4  # it stopped measuring once it reported


def test_a_failed_measure_is_tried_again_never_taken_as_a_size() -> None:
    watch = DiskWatch(layer([None, None, 5, None, 200]), 100, interval_s=0)
    assert watched(watch) == [200]
    assert watch.measures == 5


def test_a_layer_within_its_limit_is_never_reported_and_close_stops_the_watch() -> None:
    measured = threading.Event()
    counts = []

    def measure() -> int:
        counts.append(1)
        if len(counts) == 3:
            measured.set()
        return 100  # at the limit is within it

    watch = DiskWatch(measure, 100, interval_s=0)
    reported: list[int] = []
    watch.start(reported.append)
    assert measured.wait(30)
    watch.close()
    after = len(counts)
    assert reported == [] and watch.over is None
    assert len(counts) == after  # nothing measures after close


def test_check_measures_once_and_names_the_size_past_the_limit() -> None:
    assert DiskWatch(layer([100]), 100).check() is None
    watch = DiskWatch(layer([150]), 100)
    assert watch.check() == 150 and watch.over == 150
    assert DiskWatch(layer([None]), 100).check() is None


def test_a_slow_measure_spaces_the_next_ones_out() -> None:
    assert pause_after(0.01, interval_s=1.0) == 1.0
    assert pause_after(3.0, interval_s=1.0) == 3.0 * BUSY_FACTOR
