"""Numbers an algorithm reports during a call (`algohost_runtime.log_metric`).

Each report is a REQUEST over the runner's channel; this side checks the name against
the one grammar and bounds how many names a call may use, so a chatty algorithm can
never grow its job record or its build's aggregates without limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from algohost.names import METRIC_NAME
from algohost.sandbox.runner import protocol

MAX_REPORTED_PER_CALL = 32  # distinct names one call may report


class ReportedMetrics:
    """One call's reported metrics, the last value per name; a request handler."""

    def __init__(self, max_names: int = MAX_REPORTED_PER_CALL) -> None:
        self.max_names = max_names
        self.values: dict[str, float] = {}

    def __call__(self, msg: dict[str, Any]) -> Iterator[dict[str, Any]]:
        request_id = str(msg.get("id", ""))
        refusal = self._record(msg.get("name"), msg.get("value"))
        reply: dict[str, Any] = {"type": protocol.RESPONSE, "id": request_id, "ok": not refusal,
                                 "end": True}
        if refusal:
            reply["error"] = protocol.error_info("ValueError", refusal)
        yield reply

    def _record(self, name: Any, value: Any) -> str:
        """Why the report is refused, or '' once it is recorded."""
        if not METRIC_NAME.matches(name):
            return f"{METRIC_NAME.what} is {METRIC_NAME.rule}"
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return "a metric's value is a finite number"
        if name not in self.values and len(self.values) >= self.max_names:
            return f"a call may report at most {self.max_names} metric names"
        self.values[name] = float(value)
        return ""
